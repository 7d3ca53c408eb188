//! `cargo xtask images`: builds the `mesh-control`, `mesh-proxy` and `boutique` container
//! images from the repository's multi-stage `Dockerfile` with the first container engine
//! that answers (`docker`, then `podman`; `--engine` picks one), tags them
//! `<hub>/<name>:<tag>` (the names `meshctl install` deploys by default, and the boutique
//! image `examples/online-boutique/kubernetes-manifests-rust.yaml` names), and optionally
//! pushes them or loads them into minikube.
//!
//! Without an engine it builds nothing and says how to get one, or how to build inside
//! minikube instead (`minikube image build`), and fails — it never pretends.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// The image of the Online Boutique's services in Rust (`boutique <service>`), which
/// `examples/online-boutique/kubernetes-manifests-rust.yaml` runs.
pub(crate) const BOUTIQUE: &str = "boutique";

/// The images, each a `Dockerfile` target of the same name.
pub(crate) const IMAGES: [&str; 3] = ["mesh-control", "mesh-proxy", BOUTIQUE];

/// Arguments of `cargo xtask images`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Registry and repository prefix (`meshctl install --set hub=...`).
    #[arg(long, default_value = mesh_api::inject::DEFAULT_HUB)]
    pub(crate) hub: String,
    /// The tag (`meshctl install --set tag=...`).
    #[arg(long, default_value = mesh_api::inject::DEFAULT_TAG)]
    pub(crate) tag: String,
    /// The container engine: `docker` or `podman` (default: the first that answers).
    #[arg(long)]
    pub(crate) engine: Option<String>,
    /// Push the images after building them.
    #[arg(long)]
    pub(crate) push: bool,
    /// Load the images into the running minikube cluster after building them.
    #[arg(long)]
    pub(crate) minikube: bool,
    /// Print the commands instead of running them.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

/// One command of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    /// The program.
    pub(crate) program: String,
    /// Its arguments.
    pub(crate) args: Vec<String>,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.program)?;
        for a in &self.args {
            write!(f, " {a}")?;
        }
        Ok(())
    }
}

/// `<hub>/<name>:<tag>`.
pub(crate) fn reference(hub: &str, name: &str, tag: &str) -> String {
    format!("{}/{name}:{tag}", hub.trim_end_matches('/'))
}

/// The commands that build (and push or load) the images with `engine` from `root`.
pub(crate) fn plan(args: &Args, engine: &str, root: &Path) -> Vec<Step> {
    let step = |program: &str, args: Vec<String>| Step {
        program: program.to_owned(),
        args,
    };
    let mut steps = Vec::new();
    for name in IMAGES {
        let image = reference(&args.hub, name, &args.tag);
        steps.push(step(
            engine,
            vec![
                "build".into(),
                "--target".into(),
                name.into(),
                "--tag".into(),
                image.clone(),
                "--file".into(),
                root.join("Dockerfile").display().to_string(),
                root.display().to_string(),
            ],
        ));
        if args.push {
            steps.push(step(engine, vec!["push".into(), image.clone()]));
        }
        if args.minikube {
            steps.push(step("minikube", vec!["image".into(), "load".into(), image]));
        }
    }
    steps
}

/// Whether `engine` is installed and its daemon (or socket) answers.
fn answers(engine: &str) -> bool {
    Command::new(engine)
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What to say when no engine answers.
pub(crate) fn no_engine_help(args: &Args) -> String {
    let mut help = String::from(
        "no container engine answers (tried `docker info` and `podman info`).\n\
         Install Docker (https://docs.docker.com/engine/install/) or Podman and start it, then run \
         `cargo xtask images` again. Or build inside minikube, which has its own engine:\n",
    );
    for name in IMAGES {
        help.push_str(&format!(
            "  minikube image build --build-opt target={name} -t {} .\n",
            reference(&args.hub, name, &args.tag)
        ));
    }
    help
}

/// Runs `cargo xtask images`.
pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let engine = match &args.engine {
        Some(e) => e.clone(),
        None if args.dry_run => "docker".to_owned(),
        None => match ["docker", "podman"].into_iter().find(|e| answers(e)) {
            Some(e) => e.to_owned(),
            None => bail!("{}", no_engine_help(args)),
        },
    };
    if !args.dry_run && args.engine.is_some() && !answers(&engine) {
        bail!(
            "`{engine} info` fails: is {engine} installed and its daemon running?\n{}",
            no_engine_help(args)
        );
    }
    for step in plan(args, &engine, root) {
        println!("+ {step}");
        if args.dry_run {
            continue;
        }
        let status = Command::new(&step.program)
            .args(&step.args)
            .current_dir(root)
            .status()
            .with_context(|| format!("cannot run {}", step.program))?;
        if !status.success() {
            bail!("`{step}` failed ({status})");
        }
    }
    if !args.dry_run {
        println!("{}", built(args));
    }
    Ok(())
}

/// What to say after building: the images, and how to use them.
pub(crate) fn built(args: &Args) -> String {
    let images: Vec<String> = IMAGES
        .iter()
        .map(|n| reference(&args.hub, n, &args.tag))
        .collect();
    let boutique = reference(&args.hub, BOUTIQUE, &args.tag);
    let mut msg = format!(
        "built {}\n\
         the mesh: meshctl install --set hub={} --set tag={}\n\
         Online Boutique on {boutique}: kubectl apply -f {}",
        images.join(", "),
        args.hub,
        args.tag,
        crate::codegen::boutique::TARGET,
    );
    let named = reference(
        mesh_api::inject::DEFAULT_HUB,
        BOUTIQUE,
        mesh_api::inject::DEFAULT_TAG,
    );
    if named != boutique {
        msg.push_str(&format!(" (its images are {named}: replace them)"));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> Args {
        Args {
            hub: "registry.local:5000/mesh/".to_owned(),
            tag: "dev".to_owned(),
            engine: None,
            push: false,
            minikube: false,
            dry_run: false,
        }
    }

    #[test]
    fn builds_each_dockerfile_target_under_the_install_names() {
        let steps = plan(&args(), "podman", Path::new("/src"));
        let lines: Vec<String> = steps.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "podman build --target mesh-control --tag registry.local:5000/mesh/mesh-control:dev --file /src/Dockerfile /src",
                "podman build --target mesh-proxy --tag registry.local:5000/mesh/mesh-proxy:dev --file /src/Dockerfile /src",
                "podman build --target boutique --tag registry.local:5000/mesh/boutique:dev --file /src/Dockerfile /src",
            ]
        );
        // The proxy image is the one injection uses.
        assert_eq!(
            reference(
                mesh_api::inject::DEFAULT_HUB,
                "mesh-proxy",
                mesh_api::inject::DEFAULT_TAG
            ),
            mesh_api::inject::Context::image(
                mesh_api::inject::DEFAULT_HUB,
                mesh_api::inject::DEFAULT_TAG
            )
        );
    }

    #[test]
    fn push_and_minikube_follow_each_build() {
        let a = Args {
            push: true,
            minikube: true,
            ..args()
        };
        let lines: Vec<String> = plan(&a, "docker", Path::new("/src"))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(lines.len(), 9);
        assert_eq!(
            lines[1],
            "docker push registry.local:5000/mesh/mesh-control:dev"
        );
        assert_eq!(
            lines[2],
            "minikube image load registry.local:5000/mesh/mesh-control:dev"
        );
        assert_eq!(
            lines[8],
            "minikube image load registry.local:5000/mesh/boutique:dev"
        );
    }

    #[test]
    fn the_dockerfile_has_every_target_and_runs_non_root() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
        // Each target's binary comes from its package, built in the one build stage.
        let packages = [
            ("mesh-control", "mesh-control"),
            ("mesh-proxy", "mesh-proxy"),
            (BOUTIQUE, "online-boutique"),
        ];
        assert_eq!(packages.map(|(name, _)| name), IMAGES);
        let build = dockerfile
            .split("cargo build ")
            .nth(1)
            .and_then(|b| b.split("\n\n").next())
            .expect("the build stage runs cargo build");
        for (name, package) in packages {
            assert!(
                dockerfile.contains(&format!(" AS {name}\n")),
                "Dockerfile target {name}"
            );
            assert!(
                dockerfile.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{name}\"]")),
                "{name}'s entrypoint is the binary (manifests set only args)"
            );
            assert!(
                dockerfile.contains(&format!(
                    "COPY --from=build /out/{name} /usr/local/bin/{name}\n"
                )),
                "{name}'s stage copies the binary"
            );
            assert!(
                build.contains(&format!("-p {package} ")),
                "builds -p {package}"
            );
            assert!(
                build.contains(&format!("target/release/{name} ")),
                "copies {name} to /out"
            );
        }
        assert!(dockerfile.contains("USER 65532:65532"));
        assert!(dockerfile.contains("USER 1337:1337"));
        // The boutique runs as upstream's manifests (and kubernetes-manifests-rust.yaml) do.
        assert!(dockerfile.contains("USER 1000:1000"));
        // Every workspace member is in the build context.
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let members = manifest.lines().find(|l| l.starts_with("members")).unwrap();
        for member in members.split('"').skip(1).step_by(2) {
            assert!(
                dockerfile.contains(&format!("COPY {member} {member}")),
                "the Dockerfile copies {member}"
            );
        }
    }

    #[test]
    fn without_an_engine_the_help_says_what_to_do() {
        let help = no_engine_help(&args());
        assert!(help.contains("Install Docker"), "{help}");
        assert!(
            help.contains(
                "minikube image build --build-opt target=mesh-proxy -t registry.local:5000/mesh/mesh-proxy:dev ."
            ),
            "{help}"
        );
        assert!(
            help.contains(
                "minikube image build --build-opt target=boutique -t registry.local:5000/mesh/boutique:dev ."
            ),
            "{help}"
        );
    }

    #[test]
    fn after_building_it_says_how_to_use_the_images() {
        let msg = built(&args());
        assert!(
            msg.starts_with(
                "built registry.local:5000/mesh/mesh-control:dev, \
                 registry.local:5000/mesh/mesh-proxy:dev, registry.local:5000/mesh/boutique:dev\n"
            ),
            "{msg}"
        );
        assert!(
            msg.contains("meshctl install --set hub=registry.local:5000/mesh/ --set tag=dev"),
            "{msg}"
        );
        // The generated manifests name the default image; other names need an edit.
        assert!(
            msg.contains(&format!(
                "kubectl apply -f examples/online-boutique/kubernetes-manifests-rust.yaml \
                 (its images are {}/boutique:{}: replace them)",
                mesh_api::inject::DEFAULT_HUB,
                mesh_api::inject::DEFAULT_TAG
            )),
            "{msg}"
        );
        let defaults = built(&Args {
            hub: mesh_api::inject::DEFAULT_HUB.to_owned(),
            tag: mesh_api::inject::DEFAULT_TAG.to_owned(),
            ..args()
        });
        assert!(
            defaults.ends_with(
                "kubectl apply -f examples/online-boutique/kubernetes-manifests-rust.yaml"
            ),
            "{defaults}"
        );
    }
}
