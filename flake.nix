{
  description = "stackring: network identity and membership agent, its NixOS module and appliance image";

  # Lock with `nix flake lock` on a machine that reaches GitHub (flake.lock is not committed yet:
  # the machines this was written on cannot reach it).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (system: pkgs: {
        default = pkgs.callPackage ./nix/package.nix { };
        stackring = self.packages.${system}.default;
        # The appliance disk image (GPT, ESP with systemd-boot + UKI, ext4 root), built by
        # systemd-repart: result/stackring.raw.
        image = (nixpkgs.lib.nixosSystem {
          inherit system;
          modules = [ self.nixosModules.default ./nix/appliance.nix ];
        }).config.system.build.image;
      });

      # services.stackring; the package defaults to this flake's build of the binary.
      nixosModules.default = { lib, pkgs, ... }: {
        imports = [ ./nix/module.nix ];
        services.stackring.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
      };

      overlays.default = final: _prev: {
        stackring = final.callPackage ./nix/package.nix { };
      };

      checks = forAllSystems (system: pkgs: {
        package = self.packages.${system}.default;
        # Three IPv6-only NixOS VMs form a cluster.
        cluster = pkgs.testers.runNixOSTest (import ./nix/tests/cluster.nix { inherit self; });
      });

      devShells = forAllSystems (system: pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${system}.default ];
          packages = with pkgs; [
            cargo rustc rustfmt clippy rust-analyzer
            iproute2 curl jq socat
            mkosi qemu OVMF
          ];
        };
      });

      formatter = forAllSystems (_system: pkgs: pkgs.nixpkgs-fmt);
    };
}
