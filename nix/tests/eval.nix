# What can be evaluated without nixpkgs (tests/appliance/nix-check runs this with
# `nix-instantiate --eval --strict --json` and checks the result):
#   - nix/lib.nix on the real units of systemd/: only the Exec lines change; its unit list is
#     what systemd/ holds;
#   - flake.nix's outputs, wired to a stub nixpkgs that has only the names the wiring uses: which
#     packages, checks, devShells and modules exist, for which systems;
#   - nix/package.nix and nix/module.nix called with stub `lib`/`pkgs` (the stubs mimic nixpkgs
#     only as far as these files use it): the package's name, version, lock file and unit, the
#     module's ExecStart override, /etc file and firewall;
#   - the cluster VM test's Python script (its text, for a syntax check by nix-check).
# None of this builds anything; a real `nix build`/`nix flake check` needs nixpkgs.
let
  srLib = import ../lib.nix;
  store = name: "/nix/store/00000000000000000000000000000000-${name}";

  # --- the unit
  unitSrc = builtins.readFile ../../systemd/stackring.service;
  unit = srLib.unitText {
    text = unitSrc;
    stackring = "${store "stackring"}/bin/stackring";
    kill = "${store "coreutils"}/bin/kill";
  };
  srcLines = srLib.lines unitSrc;
  outLines = srLib.lines unit;
  indices = builtins.genList (i: i) (builtins.length srcLines);
  changed = builtins.filter (i: builtins.elemAt srcLines i != builtins.elemAt outLines i) indices;
  changedLines = map (i: builtins.elemAt outLines i) changed;
  isExec = l: builtins.match "Exec(Start|StartPre|Reload)=/nix/store/.*" l != null;
  # The same for every unit of systemd/: which lines the store rewrite changes.
  changedIn = name:
    let
      src = srLib.lines (builtins.readFile (../../systemd + "/${name}"));
      out = srLib.lines (srLib.unitText {
        text = builtins.readFile (../../systemd + "/${name}");
        stackring = "${store "stackring"}/bin/stackring";
        kill = "${store "coreutils"}/bin/kill";
      });
    in
    if builtins.length src != builtins.length out then [ "<line count changed>" ]
    else builtins.filter (l: l != null)
      (builtins.genList (i: if builtins.elemAt src i != builtins.elemAt out i then builtins.elemAt out i else null)
        (builtins.length src));
  occurrences = needle: text: builtins.length (builtins.split needle text) - 1;

  # --- stubs of the nixpkgs names used
  genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
  stubLib = {
    inherit genAttrs;
    mkIf = cond: v: if cond then v else { };
    mkDefault = v: v;
    mkOption = o: o;
    mkEnableOption = d: { description = d; default = false; };
    literalExpression = x: x;
    types = { package = "package"; bool = "bool"; };
    getExe = p: "${p}/bin/stackring";
    licenses.asl20 = "asl20";
    platforms.linux = [ "x86_64-linux" "aarch64-linux" ];
    nixosSystem = args: { config.system.build.image = { type = "derivation"; name = "image"; modules = args.modules; }; };
  };
  stubPkgs = system: {
    inherit system;
    stdenv.hostPlatform.system = system;
    callPackage = fn: args: { type = "derivation"; name = "stackring"; };
    testers.runNixOSTest = test: { type = "derivation"; name = "nixos-test"; inherit test; };
    mkShell = args: { type = "derivation"; name = "shell"; };
    nixpkgs-fmt = { type = "derivation"; name = "nixpkgs-fmt"; };
    formats.yaml = _: { type = "yaml"; generate = name: value: store name; };
    runCommand = name: attrs: script: store name;
  };
  systems = [ "x86_64-linux" "aarch64-linux" ];
  stubNixpkgs = { lib = stubLib; legacyPackages = genAttrs systems stubPkgs; };

  # --- the flake
  flake = import ../../flake.nix;
  outputs = flake.outputs { self = outputs // { outPath = toString ../..; }; nixpkgs = stubNixpkgs; };
  moduleWrapper = outputs.nixosModules.default { lib = stubLib; pkgs = stubPkgs "x86_64-linux"; };

  # --- the package and the module, on stubs
  package = import ../package.nix {
    lib = stubLib;
    rustPlatform.buildRustPackage = args: args;
    coreutils = store "coreutils";
    installShellFiles = store "installShellFiles";
  };
  moduleWith = settings: (import ../module.nix {
    config.services.stackring = { enable = true; openFirewall = true; package = store "stackring"; inherit settings; };
    lib = stubLib;
    pkgs = stubPkgs "x86_64-linux";
  }).config;
  moduleDefault = moduleWith { };
  moduleCustom = moduleWith { server.grpc_listen_port = 19095; server.https_listen_port = 19443; memberlist.bind_port = 17946; };

  cluster = (import ./cluster.nix { self = outputs; }) { lib = stubLib; };

  # --- the appliance image's module on stubs: its own settings, the config it reads given as it
  # sets them (a real evaluation's fixed point)
  applianceIds = { esp = "00-esp"; store = "10-store"; store-verity = "11-store-verity"; };
  appliance = (import ../appliance.nix {
    config = {
      image.repart.verityStore.partitionIds = applianceIds;
      system.image.version = "1";
      stackring.appliance = { updateUrl = "file:///var/lib/stackring-updates/"; updateKey = null; };
      services.stackring.package = store "stackring";
    };
    lib = stubLib // {
      mkForce = v: v;
      toUpper = s: if s == "x64" then "X64" else s;
      types = stubLib.types // { str = "str"; path = "path"; nullOr = t: "nullOr ${t}"; };
    };
    pkgs = stubPkgs "x86_64-linux" // {
      stdenv.hostPlatform = { system = "x86_64-linux"; efiArch = "x64"; };
      systemd = store "systemd";
    };
    modulesPath = "/nixpkgs/nixos/modules";
  });
in
{
  unit_lines = builtins.length srcLines;
  unit_changed_lines = changedLines;
  unit_only_exec_paths_changed = changedLines != [ ] && builtins.all isExec changedLines
    && builtins.length srcLines == builtins.length outLines;
  unit_usr_bin_left = occurrences "/usr/bin/stackring" unit;
  units_in_systemd_dir = builtins.attrNames (builtins.readDir ../../systemd);
  units_in_lib = srLib.unitNames;
  units_changed_lines = builtins.listToAttrs (map (n: { name = n; value = changedIn n; }) srLib.unitNames);

  flake_description = flake.description;
  flake_inputs = builtins.attrNames flake.inputs;
  flake_nixpkgs_url = flake.inputs.nixpkgs.url;
  flake_outputs_args = builtins.attrNames (builtins.functionArgs flake.outputs);
  systems = builtins.attrNames outputs.packages;
  packages = builtins.attrNames outputs.packages.x86_64-linux;
  checks = builtins.attrNames outputs.checks.x86_64-linux;
  devShells = builtins.attrNames outputs.devShells.x86_64-linux;
  nixosModules = builtins.attrNames outputs.nixosModules;
  overlays = builtins.attrNames outputs.overlays;
  image_modules = map (m: if builtins.isFunction m then "<module function>" else toString m)
    outputs.packages.x86_64-linux.image.modules;
  module_wrapper_imports = map toString moduleWrapper.imports;

  package_pname = package.pname;
  package_version = package.version;
  package_cargo_lock = toString package.cargoLock.lockFile;
  package_cargo_lock_exists = builtins.pathExists package.cargoLock.lockFile;
  package_test_flags = package.cargoTestFlags;
  package_pass_as_file = package.passAsFile;
  package_post_install = package.postInstall;
  package_native_build_inputs = map toString package.nativeBuildInputs;
  package_unit_texts = map (a: package.${a}) package.passAsFile;
  package_unit_exec_lines = builtins.concatLists (map
    (a: builtins.filter (l: builtins.match "Exec.*" l != null) (srLib.lines package.${a}))
    package.passAsFile);
  package_main_program = package.meta.mainProgram;

  module_exec_start = moduleDefault.systemd.services.stackring.serviceConfig.ExecStart;
  module_wanted_by = moduleDefault.systemd.services.stackring.wantedBy;
  module_type = moduleDefault.systemd.services.stackring.serviceConfig.Type;
  module_exec_reload = moduleDefault.systemd.services.stackring.serviceConfig.ExecReload;
  module_etc_config = moduleDefault.environment.etc."stackring/stackring.yaml".source;
  module_systemd_packages = moduleDefault.systemd.packages;
  module_firewall_default = moduleDefault.networking.firewall;
  module_firewall_custom = moduleCustom.networking.firewall;

  appliance_imports = appliance.imports;
  appliance_options = builtins.attrNames appliance.options.stackring.appliance;
  appliance_partition_ids = appliance.config.image.repart.verityStore.partitionIds;
  appliance_partition_ids_as_read = applianceIds;
  appliance_verity_store = appliance.config.image.repart.verityStore.enable;
  appliance_split = appliance.config.image.repart.split;
  appliance_partitions = builtins.mapAttrs (_: p: p.repartConfig) appliance.config.image.repart.partitions;
  appliance_filesystems = builtins.mapAttrs (_: f: { fsType = f.fsType or null; device = f.device or null; options = f.options or [ ]; })
    appliance.config.fileSystems;
  appliance_uki = appliance.config.boot.uki;
  appliance_dm_verity = appliance.config.boot.initrd.systemd.dmVerity.enable;
  appliance_repart_runtime = appliance.config.systemd.repart.partitions;
  appliance_sysupdate = appliance.config.systemd.sysupdate;
  appliance_health = appliance.config.systemd.services.stackring-boot-health;
  appliance_sysupdate_timer_wanted_by = appliance.config.systemd.timers.systemd-sysupdate.wantedBy;
  appliance_pubring = appliance.config.environment.etc;

  cluster_name = cluster.name;
  cluster_nodes = builtins.attrNames cluster.nodes;
  cluster_test_script = cluster.testScript;
}
