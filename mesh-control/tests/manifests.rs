//! The control-plane Deployment that `meshctl install` applies (`deploy/manifests/`,
//! generated from `meshctl::manifest` and checked fresh by `cargo xtask codegen --check`)
//! starts this binary with flags it accepts: every profile's `mesh-control` container args
//! parse, and the settings they make are the profile's.

use std::path::Path;

use clap::Parser as _;
use mesh_control::cli::Cli;
use serde_json::Value;

/// The `mesh-control` container's args in `deploy/manifests/<profile>.yaml`.
fn control_args(profile: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/manifests")
        .join(format!("{profile}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("valid YAML");
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "mesh-control")
        .unwrap_or_else(|| panic!("{profile}: no mesh-control Deployment"));
    let container = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "mesh-control")
        .expect("a mesh-control container");
    container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_profile_starts_mesh_control_with_flags_it_accepts() {
    for profile in ["minimal", "default", "demo"] {
        let args = control_args(profile);
        let cli =
            Cli::try_parse_from(std::iter::once("mesh-control".to_owned()).chain(args.clone()))
                .unwrap_or_else(|e| panic!("{profile}: {args:?}: {e}"));
        assert!(
            cli.command.is_none(),
            "{profile}: the server, not a subcommand"
        );
        let server = cli.server;
        assert!(server.kubernetes, "{profile}");
        assert_eq!(server.root_namespace, "mesh-system", "{profile}");
        assert_eq!(server.discovery_addr.port(), 15012, "{profile}");
        assert_eq!(server.debug_addr.port(), 15014, "{profile}");
        let webhook = &server.webhook;
        assert_eq!(
            webhook.webhook_addr.map(|a| a.port()),
            Some(15017),
            "{profile}"
        );
        assert_eq!(
            webhook.injector_config.as_deref(),
            Some("mesh-sidecar-injector")
        );
        assert_eq!(webhook.validator_config.as_deref(), Some("mesh-validator"));
        // The flags make valid injection settings (what App::build checks at start).
        let settings = webhook
            .settings(&server.trust_domain, &server.root_namespace, true)
            .unwrap_or_else(|e| panic!("{profile}: {e:#}"));
        assert_eq!(
            settings.inject.image,
            format!("ghcr.io/mesh-dev/mesh-proxy:{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(
            settings.inject.control_plane_addr,
            "mesh-control.mesh-system.svc:15012"
        );
        let demo = profile == "demo";
        assert_eq!(settings.inject.access_log, demo, "{profile}");
        assert_eq!(
            settings.inject.trace_sampling,
            demo.then_some(100.0),
            "{profile}"
        );
    }
}
