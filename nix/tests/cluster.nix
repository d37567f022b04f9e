# NixOS VM test (flake checks.<system>.cluster): three IPv6-only nodes form a stackring cluster.
# Each node has one cluster interface, eth1, with a static ULA address and no IPv4 (the test
# driver's eth0 is left unconfigured). Uses the bootstrap API and `stackring status nodes --json`
# as the README describes them (members with state ACTIVE, status OK/DOWN, family). Without
# nixpkgs it cannot run as a NixOS test here; tests/appliance/nixos-test-shim runs its script
# against the agent in network namespaces instead (see docs/appliance.md).
{ self }:
{ lib, ... }:

let
  prefix = "fd00:c1::";
  addr = n: "${prefix}${toString n}";
  credentials = { username = "admin"; password = "ring-test-secret"; };

  node = n: { lib, pkgs, ... }: {
    imports = [ self.nixosModules.default ];
    virtualisation.vlans = [ 1 ];
    networking.interfaces = lib.mkForce {
      eth1.ipv6.addresses = [ { address = addr n; prefixLength = 64; } ];
    };
    environment.systemPackages = [ pkgs.curl pkgs.jq ];
    services.stackring = {
      enable = true;
      openFirewall = true;
      settings = {
        lifecycler.id = "node${toString n}";
        lifecycler.interface_names = [ "eth1" ];
      };
    };
  };

  body = action: n: builtins.toJSON ({
    inherit action credentials;
    node.identity = { addr = addr n; use_internal_ipv6 = true; name = "node${toString n}"; };
  } // (if action == "create_cluster"
        then { cluster.name = "ring.test"; }
        else { cluster = { name = "ring.test"; nodes = [ (addr 1) ]; }; }));
  # The bootstrap call, made on node n to its own API over IPv6 and HTTPS (plain HTTP refuses
  # changes); -k: the node's own certificate, trusted on first use.
  post = n: action:
    "curl -sf -g -k -X POST -H 'Content-Type: application/json' --data '${body action n}' "
    + "https://[${addr n}]:9443/v1/bootstrap/${action}";
in
{
  name = "stackring-cluster-ipv6";

  nodes = {
    node1 = node 1;
    node2 = node 2;
    node3 = node 3;
  };

  testScript = ''
    import json

    nodes = [node1, node2, node3]

    def bootstrap_completed(m):
        m.wait_until_succeeds(
            "test \"$(curl -sf -g http://[::1]:3200/v1/bootstrap | jq -r .state)\" = completed",
            timeout=120)
    start_all()

    with subtest("every node decides IPv6 on eth1 by itself"):
        for i, m in enumerate(nodes, start=1):
            m.wait_for_unit("stackring.service")
            # Active means running and answering; the identity is stackring-online.target.
            m.succeed("systemctl start stackring-online.target")
            m.succeed("! ip -4 addr show dev eth1 | grep -q inet")
            ident = json.loads(m.succeed("stackring inspect --json"))
            assert ident["family"] == "ipv6", ident
            assert ident["internal_addr"] == "${prefix}" + str(i), ident
            m.succeed("grep -qx 'STACKRING_FAMILY=ipv6' /run/stackring/identity.env")
            m.wait_until_succeeds("curl -sf -g http://[::1]:3200/ready")

    with subtest("node1 creates the cluster, node2 and node3 join it over IPv6"):
        node1.succeed("""${post 1 "create_cluster"}""")
        bootstrap_completed(node1)
        node2.succeed("""${post 2 "join_cluster"}""")
        node3.succeed("""${post 3 "join_cluster"}""")
        bootstrap_completed(node2)
        bootstrap_completed(node3)

    with subtest("all three see all three, ACTIVE, on their IPv6 addresses"):
        for m in nodes:
            m.wait_until_succeeds(
                "stackring status nodes --json | "
                "jq -e '[.[] | select(.state == \"ACTIVE\" and .status == \"OK\" and .family == \"ipv6\")] | length == 3'",
                timeout=120)
        table = node2.succeed("stackring status nodes")
        for i in (1, 2, 3):
            assert "${prefix}" + str(i) in table, table

    with subtest("a stopped node drops out, and comes back with the same id"):
        node3.succeed("systemctl stop stackring")
        # Stopped (gracefully) it is no longer an OK, ACTIVE member for the others.
        node1.wait_until_succeeds(
            "stackring status nodes --json | "
            "jq -e '.[] | select(.id == \"node3\") | .status != \"OK\" or .state != \"ACTIVE\"'",
            timeout=120)
        node3.succeed("systemctl start stackring")
        node1.wait_until_succeeds(
            "stackring status nodes --json | jq -e '[.[] | select(.state == \"ACTIVE\" and .status == \"OK\")] | length == 3'",
            timeout=120)
  '';
}
