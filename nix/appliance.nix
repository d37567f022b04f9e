# The NixOS appliance image (packages.image): GPT with an ESP holding systemd-boot and a unified
# kernel image, an ext4 root, built with systemd-repart (nixpkgs' image/repart.nix). The same
# appliance as image/ builds from Debian packages: networkd with DHCPv4 + SLAAC on every
# ethernet, "::1 localhost" (NixOS' default /etc/hosts has it), the journal on the serial console.
{ config, lib, pkgs, modulesPath, ... }:

let
  efiArch = pkgs.stdenv.hostPlatform.efiArch;
in
{
  imports = [ "${modulesPath}/image/repart.nix" ];

  system.stateVersion = "25.05";
  networking.hostName = "stackring";

  services.stackring = {
    enable = true;
    openFirewall = true;
  };

  # Boot: systemd-boot finds the UKI in /EFI/Linux; no boot loader is installed by NixOS itself
  # (an appliance is replaced whole, not rebuilt in place).
  boot.loader.grub.enable = false;
  boot.kernelParams = [ "console=ttyS0,115200" "systemd.firstboot=off" ];
  boot.initrd.systemd.enable = true;
  fileSystems."/" = {
    device = "/dev/disk/by-partlabel/root";
    fsType = "ext4";
  };

  image.repart = {
    name = "stackring";
    partitions = {
      "00-esp" = {
        contents = {
          "/EFI/BOOT/BOOT${lib.toUpper efiArch}.EFI".source =
            "${pkgs.systemd}/lib/systemd/boot/efi/systemd-boot${efiArch}.efi";
          "/EFI/Linux/${config.system.boot.loader.ukiFile}".source =
            "${config.system.build.uki}/${config.system.boot.loader.ukiFile}";
        };
        repartConfig = {
          Type = "esp";
          Format = "vfat";
          SizeMinBytes = "128M";
        };
      };
      "10-root" = {
        storePaths = [ config.system.build.toplevel ];
        repartConfig = {
          Type = "root";
          Format = "ext4";
          Label = "root";
          Minimize = "guess";
        };
      };
    };
  };

  # DHCPv4 and SLAAC on every ethernet; online as soon as either family has an address.
  networking.useNetworkd = true;
  networking.useDHCP = false;
  systemd.network.networks."80-ethernet" = {
    matchConfig.Type = "ether";
    networkConfig = {
      DHCP = "ipv4";
      IPv6AcceptRA = true;
    };
    linkConfig.RequiredFamilyForOnline = "any";
  };

  # The journal on the serial console: the boot log alone shows what stackring decided.
  services.journald.extraConfig = ''
    ForwardToConsole=yes
    TTYPath=/dev/ttyS0
    MaxLevelConsole=info
  '';

  # Small: no docs, no channel, no nix-daemon on the appliance.
  documentation.enable = false;
  nix.enable = false;
}
