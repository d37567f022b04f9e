# A stand-in for nixpkgs with only the names flake.nix uses, each yielding a trivial derivation,
# so that Nix's own flake machinery (`nix flake show`, `nix flake check --no-build`) can check
# the flake's outputs on machines that cannot fetch nixpkgs:
#   nix flake check --no-build --no-write-lock-file --override-input nixpkgs path:nix/tests/stub-nixpkgs
# It proves the wiring (output names and kinds, module and overlay shapes), not the build.
{
  outputs = { self }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
      stub = system: name: derivation {
        inherit name system;
        builder = "/bin/sh";
        args = [ "-c" "echo stub > $out" ];
      };
      pkgsFor = system: {
        inherit system;
        stdenv.hostPlatform.system = system;
        callPackage = _fn: _args: stub system "stackring";
        testers.runNixOSTest = _test: stub system "nixos-test";
        mkShell = _args: stub system "shell";
        nixpkgs-fmt = stub system "nixpkgs-fmt";
      };
    in
    {
      lib = {
        inherit genAttrs;
        nixosSystem = args: { config.system.build.image = stub args.system "image"; };
      };
      legacyPackages = genAttrs systems pkgsFor;
    };
}
