//! `meshctl analyze` end to end: the real binary on good and bad fixture files.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn meshctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(args)
        .env_remove("MESH_TRUST_DOMAIN")
        .output()
        .expect("run meshctl")
}

fn analyze(rel: &str) -> (i32, String) {
    let path = fixture(rel);
    let out = meshctl(&["analyze", "-f", path.to_str().unwrap()]);
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn accepts_the_bookinfo_canary_and_local_mode_config() {
    let (code, out) = analyze("good");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no problems found in 12 resources"), "{out}");
}

/// Each bad fixture: the code, the field path, the line, and words of the fix.
#[test]
fn rejects_each_bad_fixture_naming_field_and_fix() {
    let cases = [
        (
            "bad/weights-95.yaml",
            "MSH0101",
            "spec.http[0].route",
            ":23:",
            "add up to 100",
        ),
        (
            "bad/unknown-field.yaml",
            "MSH0006",
            "spec.subsets[0].lables",
            ":9:",
            "spelling",
        ),
        (
            "bad/undefined-subset.yaml",
            "MSH0103",
            "spec.http[0].route[1].destination.subset",
            ":30:",
            "add a subset named \"v2\"",
        ),
        (
            "bad/invalid-regex.yaml",
            "MSH0104",
            "spec.http[0].match[0].uri.regex",
            ":25:",
            "RE2",
        ),
        (
            "bad/bad-duration.yaml",
            "MSH0105",
            "spec.http[0].timeout",
            ":23:",
            "1m30s",
        ),
    ];
    for (file, code, path, line, fix) in cases {
        let (exit, out) = analyze(file);
        assert_eq!(exit, 1, "{file}: {out}");
        let first = out.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("{code} error: ")),
            "{file}: {out}"
        );
        assert!(first.contains(&format!("{file}{line}")), "{file}: {out}");
        assert!(first.contains(&format!(": {path}: ")), "{file}: {out}");
        let fix_line = out.lines().nth(1).unwrap_or_default();
        assert!(
            fix_line.trim_start().starts_with("fix: ") && fix_line.contains(fix),
            "{file}: {out}"
        );
        assert!(out.contains("1 error and 0 warnings"), "{file}: {out}");
    }
}

/// Authorization values that can never match are warnings naming cause and fix; the key
/// the proxy does not evaluate is the error.
#[test]
fn flags_authorization_values_that_can_never_match() {
    let (code, out) = analyze("bad/authz-never-matches.yaml");
    assert_eq!(code, 1, "{out}");
    let headlines: Vec<(&str, &str)> = out
        .lines()
        .filter(|l| l.starts_with("MSH"))
        .map(|l| {
            let code = &l[..7];
            let path = l.split("): ").nth(1).unwrap().split(": ").next().unwrap();
            (code, path)
        })
        .collect();
    assert_eq!(
        headlines,
        [
            ("MSH0204", "spec.rules[0].from[0].source.principals[0]"),
            ("MSH0206", "spec.rules[0].from[0].source.namespaces[0]"),
            ("MSH0207", "spec.rules[0].to[0].operation.hosts[0]"),
            ("MSH0208", "spec.rules[0].to[0].operation.paths[0]"),
            ("MSH0202", "spec.rules[0].when[0].key"),
            ("MSH0210", "spec.rules[1].from[0].source.notPrincipals"),
            ("MSH0209", "spec.rules[1].from[0].source.ipBlocks[0]"),
        ],
        "{out}"
    );
    for fix in [
        "    fix: write \"cluster.local/ns/default/sa/productpage\"\n",
        "    fix: this looks like a principal: write the namespace alone, \"frontend\", or move the value to `principals`\n",
        "    fix: write \"reviews\"; to restrict the port, add `ports: [\"9080\"]` (the workload's port)\n",
        "    fix: write the path alone, \"/reviews\"; authorization policies cannot test query parameters\n",
        "    fix: match methods in the rule's `to`: `to: [{operation: {methods: [GET]}}]`\n",
        "    fix: add `principals: [\"*\"]` to the source to require mTLS (any peer but the excluded ones)\n",
        "    fix: write \"10.0.0.0/8\" for the network, or \"10.0.0.1/32\" for the one address\n",
    ] {
        assert!(out.contains(fix), "{fix}in{out}");
    }
    assert!(
        out.contains("MSH0202 error: ") && out.contains("MSH0204 warning: "),
        "{out}"
    );
    assert!(
        out.ends_with("\n✘ 1 error and 6 warnings in 1 loaded resource\n"),
        "{out}"
    );
}

#[test]
fn principals_are_checked_against_the_given_trust_domain() {
    let good = fixture("good");
    let good = good.to_str().unwrap();
    // The good fixtures name cluster.local principals: another trust domain makes them
    // foreign (warnings: exit 0 unless --strict).
    let out = meshctl(&["analyze", "-f", good, "--trust-domain", "example.org"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.starts_with("MSH0205 warning: "), "{stdout}");
    assert!(
        stdout.contains("its trust domain \"cluster.local\" is not the mesh's (\"example.org\")"),
        "{stdout}"
    );
    assert!(stdout.contains("0 errors and 2 warnings"), "{stdout}");
    let out = meshctl(&[
        "analyze",
        "-f",
        good,
        "--trust-domain",
        "example.org",
        "--strict",
    ]);
    assert_eq!(out.status.code(), Some(1));

    // The same from the environment, as mesh-control reads it.
    let out = Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(["analyze", "-f", good])
        .env("MESH_TRUST_DOMAIN", "example.org")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("MSH0205"));

    let out = meshctl(&["analyze", "-f", good, "--trust-domain", "Example.org"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("trust domain contains invalid character 'E'"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn json_output_is_machine_readable() {
    let bad = fixture("bad/bad-duration.yaml");
    let good = fixture("good/local-mode.yaml");
    let out = meshctl(&[
        "analyze",
        "-f",
        bad.to_str().unwrap(),
        good.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let diagnostics = report["diagnostics"].as_array().unwrap();
    assert_eq!(diagnostics.len(), 1, "{report:#}");
    assert_eq!(diagnostics[0]["code"], "MSH0105");
    assert_eq!(diagnostics[0]["severity"], "error");
    assert_eq!(diagnostics[0]["location"]["document"], 2);
    assert_eq!(diagnostics[0]["location"]["line"], 23);
    assert_eq!(diagnostics[0]["location"]["path"], "spec.http[0].timeout");
    assert!(diagnostics[0]["fix"].as_str().unwrap().contains("500ms"));
    assert_eq!(report["summary"]["errors"], 1);
    assert_eq!(report["summary"]["resources"], 7);
}

#[test]
fn a_directory_is_one_config_set() {
    // The bad fixtures all define reviews: together they are duplicates of each other.
    let (code, out) = analyze("bad");
    assert_eq!(code, 1);
    assert!(out.contains("MSH0008 error: "), "{out}");
    assert!(out.contains("is defined twice (first in "), "{out}");
}

#[test]
fn reads_stdin_and_several_paths() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(["analyze", "-f", "-", "-f"])
        .arg(fixture("good/local-mode.yaml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let bad = std::fs::read_to_string(fixture("bad/weights-95.yaml")).unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), bad.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.starts_with("MSH0101 error: <stdin>:23:5 (document 2"),
        "{stdout}"
    );
    assert!(stdout.contains("in 7 loaded resources"), "{stdout}");
}

#[test]
fn missing_files_and_bad_flags_are_clear() {
    let out = meshctl(&["analyze", "-f", "/nonexistent/mesh.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("MSH0001 error: /nonexistent/mesh.yaml: cannot read"),
        "{stdout}"
    );

    let out = meshctl(&["analyze"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--filename <PATH>"));

    let out = meshctl(&["analyze", "-f", "x", "-o", "xml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values: text, json"));
}

#[test]
fn version_prints_the_crate_version() {
    let out = meshctl(&["version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("meshctl {}", env!("CARGO_PKG_VERSION"))
    );
}
