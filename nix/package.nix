# The stackring binary, built from this repository with the Cargo.lock (no network at build
# time), plus its systemd unit from systemd/ with the store paths filled in.
{ lib, rustPlatform, coreutils }:

let
  srLib = import ./lib.nix;
  manifest = (builtins.fromTOML (builtins.readFile ../Cargo.toml)).package;
in
rustPlatform.buildRustPackage {
  pname = manifest.name;
  inherit (manifest) version;

  # In a flake the source is the git tree already; outside one, leave build output behind.
  src = lib.cleanSourceWith {
    src = lib.cleanSource ../.;
    filter = path: type:
      let rel = lib.removePrefix (toString ../. + "/") (toString path); in
      !(builtins.elem rel [ "target" "result" "image/out" "image/cache" ]);
  };

  cargoLock.lockFile = ../Cargo.lock;

  # The integration tests build network namespaces and need root: not in the build sandbox.
  # The unit tests of the pure core run.
  cargoTestFlags = [ "--lib" ];

  # The unit file with this package's paths; `placeholder "out"` becomes $out at build time.
  unitText = srLib.unitText {
    text = builtins.readFile ../systemd/stackring.service;
    stackring = "${placeholder "out"}/bin/stackring";
    kill = "${coreutils}/bin/kill";
  };
  passAsFile = [ "unitText" ];
  postInstall = ''
    install -Dm644 "$unitTextPath" "$out/lib/systemd/system/stackring.service"
  '';

  meta = {
    description = "Network identity and membership agent of a clustered appliance";
    license = lib.licenses.asl20;
    mainProgram = "stackring";
    platforms = lib.platforms.linux;
  };
}
