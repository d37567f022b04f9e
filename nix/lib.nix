# Pure helpers (builtins only, no nixpkgs): the package, the module and tests/appliance/nix-check
# use them, so what they compute is evaluated on machines without nixpkgs too.
rec {
  # The units of systemd/, installed alike by the Debian image (image/build) and the Nix package:
  # the agent, and the wait service and target for the units that need the identity
  # (nix/tests/eval.nix checks that this list is what systemd/ holds).
  unitNames = [ "stackring.service" "stackring-wait-online.service" "stackring-online.target" ];

  # A unit of systemd/ for a Nix store install: only the paths of the Exec
  # lines change (/usr/bin/stackring -> the package's binary, /bin/kill -> coreutils' kill, since
  # NixOS has neither); every other byte of the file is kept.
  unitText = { text, stackring, kill }:
    builtins.replaceStrings [ "/usr/bin/stackring" "/bin/kill" ] [ stackring kill ] text;

  # The lines of a text, without the separators that builtins.split interleaves.
  lines = text: builtins.filter builtins.isString (builtins.split "\n" text);

  # The daemon's command line: the validated settings file from the store.
  execStart = { stackring, configFile }: "${stackring} --config ${configFile} serve";

  # The ports stackring listens on, from its settings (defaults as in SPEC.md section 3).
  ports = settings:
    let
      get = section: key: default:
        if settings ? ${section} && settings.${section} ? ${key} then settings.${section}.${key} else default;
    in {
      grpc = get "server" "grpc_listen_port" 9095;
      http = get "server" "http_listen_port" 3200;
      # The bootstrap and admin API over TLS (Redis Enterprise's REST API port).
      https = get "server" "https_listen_port" 9443;
      gossip = get "memberlist" "bind_port" 7946;
    };

  # Firewall openings for openFirewall: gRPC, HTTP and HTTPS over TCP; gossip (chitchat) over UDP,
  # and over TCP too (the gossip port's TLS discovery, which joiners by memberlist.join_members and
  # the reachability probes use). The same ports `stackring config firewall` opens (the appliance's
  # nftables ruleset); nix-check compares the two.
  firewall = settings:
    let p = ports settings; in {
      allowedTCPPorts = [ p.grpc p.http p.https p.gossip ];
      allowedUDPPorts = [ p.gossip ];
    };
}
