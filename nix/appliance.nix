# The NixOS appliance image (packages.image), the same appliance image/ builds from Debian
# packages, in NixOS' own shape: a GPT disk built with systemd-repart (nixpkgs' image/repart.nix)
# holding an ESP with systemd-boot and a unified kernel image per version; slot A, this version's
# Nix store as /usr under dm-verity (image.repart.verityStore: the store and its hash partition,
# whose root hash the kernel image names, usrhash=), labelled stackring_<version> and
# stackring-verity_<version> as the Debian image's root slots are; slot B and its hash partition
# "_empty"; /var of its own, grown to the disk at first boot; "/" a tmpfs. systemd-sysupdate
# takes a new version into the other slot with three tries on its kernel image; stackring's own
# health check blesses the boot (the unit and the definitions mirror image/'s: see
# docs/appliance.md, "Nix", for what was evaluated and what not). networkd with DHCPv4 + SLAAC on
# every ethernet, "::1 localhost" (NixOS' default /etc/hosts has it), the journal on the serial
# console.
{ config, lib, pkgs, modulesPath, ... }:

let
  efiArch = pkgs.stdenv.hostPlatform.efiArch;
  # The partition type's architecture as systemd names it (the artifacts' names carry it).
  partArch = { x86_64-linux = "x86-64"; aarch64-linux = "arm64"; }.${pkgs.stdenv.hostPlatform.system};
  inherit (config.image.repart.verityStore) partitionIds;
  cfg = config.stackring.appliance;
  version = config.system.image.version;
  # The slots' sizes are the Debian image's (image/mkosi.repart): any version fits either slot.
  slot = { SizeMinBytes = "640M"; SizeMaxBytes = "640M"; };
  hashes = { SizeMinBytes = "64M"; SizeMaxBytes = "64M"; };
  # Every definition checks SHA256SUMS' signature (SHA256SUMS.gpg) against the one key in
  # /etc/systemd/import-pubring.gpg.
  transfer = { ProtectVersion = "%A"; Verify = "yes"; };
  # A slot partition's transfer: the version's file into the slot that is not running.
  slotTransfer = { suffix, label, type }: {
    Transfer = transfer;
    Source = {
      Type = "url-file";
      Path = cfg.updateUrl;
      MatchPattern = "stackring_@v_@u.usr-${partArch}${suffix}.raw.gz";
    };
    Target = {
      Type = "partition";
      Path = "auto";
      MatchPattern = "${label}_@v";
      MatchPartitionType = type;
      PartitionFlags = 0;
      ReadOnly = 1;
    };
  };
in
{
  imports = [ "${modulesPath}/image/repart.nix" ];

  options.stackring.appliance = {
    updateUrl = lib.mkOption {
      type = lib.types.str;
      default = "file:///var/lib/stackring-updates/";
      description = "Where systemd-sysupdate finds the update artifacts (a directory with SHA256SUMS and SHA256SUMS.gpg).";
    };
    updateKey = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      description = ''
        The public key (`gpg --export`) that signs the update artifacts' SHA256SUMS: installed
        alone as /etc/systemd/import-pubring.gpg (image/signing-key export writes it for the
        Debian build's key). Without it no update is taken: every definition says Verify=yes.
      '';
    };
  };

  config = {
    system.stateVersion = "25.05";
    system.image = {
      id = "stackring";
      version = lib.mkDefault "1";
    };
    networking.hostName = "stackring";

    services.stackring = {
      enable = true;
      openFirewall = true;
    };

    # Boot: systemd-boot finds the kernel image in /EFI/Linux; nothing is installed in place (an
    # appliance is replaced by versions, not rebuilt). A new version's kernel image has three
    # tries (stackring_<version>+3-0.efi).
    boot.loader.grub.enable = false;
    boot.kernelParams = [ "console=ttyS0,115200" "systemd.firstboot=off" ];
    boot.initrd.systemd.enable = true;
    boot.initrd.systemd.dmVerity.enable = true;
    boot.uki = {
      name = "stackring";
      inherit version;
      tries = 3;
    };

    # "/" in memory, the store read-only from the verified slot, the state on /var.
    fileSystems."/" = {
      fsType = "tmpfs";
      options = [ "mode=0755" ];
    };
    fileSystems."/usr" = {
      device = "/dev/mapper/usr";
      fsType = "erofs";
      options = [ "ro" ];
    };
    fileSystems."/nix/store" = {
      device = "/usr/nix/store";
      options = [ "bind" ];
    };
    fileSystems."/var" = {
      device = "/dev/disk/by-partlabel/var";
      fsType = "ext4";
      autoResize = true;
    };

    image.repart = {
      name = "stackring";
      # The update artifacts: each partition's file beside the disk image.
      split = true;
      verityStore = {
        enable = true;
        partitionIds = {
          esp = "00-esp";
          store = "10-store";
          store-verity = "11-store-verity";
        };
      };
      partitions = {
        ${partitionIds.esp} = {
          contents."/EFI/BOOT/BOOT${lib.toUpper efiArch}.EFI".source =
            "${pkgs.systemd}/lib/systemd/boot/efi/systemd-boot${efiArch}.efi";
          repartConfig = {
            Type = "esp";
            Format = "vfat";
            SizeMinBytes = "256M";
            SizeMaxBytes = "256M";
          };
        };
        ${partitionIds.store}.repartConfig = slot // {
          Label = "stackring_${version}";
          Format = "erofs";
        };
        ${partitionIds.store-verity}.repartConfig = hashes // {
          Label = "stackring-verity_${version}";
        };
        "20-store-b".repartConfig = slot // {
          Type = "usr";
          Label = "_empty";
        };
        "21-store-b-verity".repartConfig = hashes // {
          Type = "usr-verity";
          Label = "_empty";
        };
        "30-var".repartConfig = {
          Type = "var";
          Label = "var";
          Format = "ext4";
          SizeMinBytes = "256M";
        };
      };
    };
    # /var grows to the end of the disk at first boot (then systemd-growfs, autoResize above).
    boot.initrd.systemd.repart.enable = true;
    systemd.repart.partitions."30-var".Type = "var";

    # Updates, when the operator says so (no timers): the store slot, its hash partition and the
    # kernel image, the running version never touched.
    systemd.sysupdate = {
      enable = true;
      reboot.enable = false;
      transfers = {
        "10-store" = slotTransfer { suffix = ""; label = "stackring"; type = "usr"; };
        "11-store-verity" = slotTransfer { suffix = "-verity"; label = "stackring-verity"; type = "usr-verity"; };
        "20-uki" = {
          Transfer = transfer;
          Source = {
            Type = "url-file";
            Path = cfg.updateUrl;
            MatchPattern = "stackring_@v.efi";
          };
          Target = {
            Type = "regular-file";
            Path = "/EFI/Linux";
            PathRelativeTo = "boot";
            MatchPattern = "stackring_@v+@l-@d.efi stackring_@v+@l.efi stackring_@v.efi";
            Mode = "0444";
            TriesLeft = 3;
            TriesDone = 0;
            InstancesMax = 2;
          };
        };
      };
    };
    # nixpkgs' module starts the timer; the Debian image leaves both timers off.
    systemd.timers.systemd-sysupdate.wantedBy = lib.mkForce [ ];
    environment.etc."systemd/import-pubring.gpg" = lib.mkIf (cfg.updateKey != null) {
      source = cfg.updateKey;
    };

    # A new version's boot is good once the agent answers (image/'s stackring-boot-health.service).
    systemd.services.stackring-boot-health = {
      description = "stackring: the boot is good once the agent answers (blesses a new version)";
      wants = [ "stackring.service" ];
      after = [ "stackring.service" ];
      before = [ "boot-complete.target" ];
      requiredBy = [ "boot-complete.target" ];
      unitConfig.FailureAction = "reboot";
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "${config.services.stackring.package}/bin/stackring status";
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
  };
}
