# NixOS module: services.stackring. The unit is systemd/stackring.service as installed by the
# package (nix/package.nix); this module overrides only its ExecStart, to run the daemon with the
# settings rendered to YAML and validated at build time by `stackring config validate`.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.stackring;
  srLib = import ./lib.nix;
  format = pkgs.formats.yaml { };

  rendered = format.generate "stackring.yaml" cfg.settings;
  # A settings mistake fails `nixos-rebuild`/`nix build`, with the key, the value and the fix,
  # instead of failing the service at boot.
  configFile = pkgs.runCommand "stackring.yaml"
    {
      nativeBuildInputs = [ cfg.package ];
      preferLocalBuild = true;
    } ''
    stackring config validate ${rendered}
    cp ${rendered} $out
  '';
in
{
  options.services.stackring = {
    enable = lib.mkEnableOption "stackring, the network identity and membership agent";

    package = lib.mkOption {
      type = lib.types.package;
      description = "The stackring package (the flake's `packages.default`).";
    };

    settings = lib.mkOption {
      type = format.type;
      default = { };
      example = lib.literalExpression ''
        {
          node.use_internal_ipv6 = true;
          lifecycler.interface_names = [ "eth1" ];
          server.grpc_listen_port = 9095;
          # The bootstrap and admin API over HTTPS (default 9443); plain HTTP answers reads only.
          server.https_listen_port = 9443;
        }
      '';
      description = ''
        stackring's configuration (Tempo/dskit key names: `server`, `memberlist`, `lifecycler`,
        `node`), rendered to YAML. Unknown keys are errors, caught at build time.
      '';
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = ''
        Open the gRPC, HTTP and HTTPS ports (TCP: `server.grpc_listen_port`, `http_listen_port`,
        `https_listen_port`, set in `settings`) and the gossip port (UDP) in the firewall.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ cfg.package ];
    # The admin CLI (`stackring inspect`, `preflight`) and stackring-wait-online.service
    # (`stackring wait`) read the default path: the same validated file.
    environment.etc."stackring/stackring.yaml".source = configFile;

    # The unit files come from the package, unchanged but for their store paths: the agent, and
    # stackring-wait-online.service / stackring-online.target for units that need the identity
    # (`wants = [ "stackring-online.target" ]; after = [ "stackring-online.target" ];`).
    systemd.packages = [ cfg.package ];
    systemd.services.stackring = {
      wantedBy = [ "multi-user.target" ];
      # Only ExecStart changes: the store path of the settings makes a settings change a unit
      # change, so switching configurations restarts the daemon.
      serviceConfig.ExecStart = [
        ""
        (srLib.execStart {
          stackring = lib.getExe cfg.package;
          inherit configFile;
        })
      ];
      # NixOS runs systemd >= 254, as the appliance does: `systemctl reload` sends SIGHUP itself
      # and returns once the daemon said RELOADING=1 ... READY=1 (the file applied or refused),
      # not once the signal is sent (the package's `kill -HUP`, for bookworm's systemd 252).
      serviceConfig.Type = "notify-reload";
      serviceConfig.ExecReload = [ "" ];
    };

    networking.firewall = lib.mkIf cfg.openFirewall (srLib.firewall cfg.settings);
  };
}
