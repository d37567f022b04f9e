# The stackring binary, built from this repository with the Cargo.lock (no network at build
# time), plus its systemd units from systemd/ (the agent, stackring-wait-online.service and
# stackring-online.target) with the store paths filled in.
{ lib, rustPlatform, coreutils }:

let
  srLib = import ./lib.nix;
  manifest = (builtins.fromTOML (builtins.readFile ../Cargo.toml)).package;
  # Each unit file with this package's paths; `placeholder "out"` becomes $out at build time.
  # passAsFile needs shell-safe attribute names: unit0, unit1, ...
  units = builtins.genList
    (i:
      let name = builtins.elemAt srLib.unitNames i; in {
        inherit name;
        attr = "unit${toString i}";
        text = srLib.unitText {
          text = builtins.readFile (../systemd + "/${name}");
          stackring = "${placeholder "out"}/bin/stackring";
          kill = "${coreutils}/bin/kill";
        };
      })
    (builtins.length srLib.unitNames);
in
rustPlatform.buildRustPackage ({
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

  passAsFile = map (u: u.attr) units;
  postInstall = builtins.concatStringsSep ""
    (map (u: "install -Dm644 \"\$${u.attr}Path\" \"$out/lib/systemd/system/${u.name}\"\n") units);

  meta = {
    description = "Network identity and membership agent of a clustered appliance";
    license = lib.licenses.asl20;
    mainProgram = "stackring";
    platforms = lib.platforms.linux;
  };
} // builtins.listToAttrs (map (u: { name = u.attr; value = u.text; }) units))
