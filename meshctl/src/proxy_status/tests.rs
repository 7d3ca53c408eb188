//! The proxy-status table, selection and `--check` on the shared fixtures.

use super::*;
use crate::fixtures::mk_status_list;

#[test]
fn renders_rows_ages_and_nacks() {
    let list = mk_status_list();
    assert_eq!(
        render(&list),
        "\
mesh-control 0.1.0, config version 42
NAME                          ID                                             VERSION    CONFIG VERSION   SYNC     LAST ACK   CONNECTED
ratings-v1-8f2a.bookinfo      sidecar~10.0.1.9~ratings-v1-8f2a.bookinfo      0.1.0      40               NACKED   3m4s       1d
productpage-v1-6b7f.default   sidecar~10.0.0.5~productpage-v1-6b7f.default   0.1.0      42               SYNCED   850ms      2h5m
reviews-v2-5c9d.default       sidecar~10.0.0.7~reviews-v2-5c9d.default       0.1.0      41               STALE    12s        3m4s
ingress-gw-1.mesh-system      gateway~10.0.2.1~ingress-gw-1.mesh-system      0.1.0-rc   -                STALE    never      850ms

ratings-v1-8f2a.bookinfo: NACKED mesh.discovery.v1.RouteTable version 42: invalid route table \"ratings.bookinfo.svc.cluster.local:9080\": http[0].action.forward.backends: weights must not all be zero
"
    );
}

#[test]
fn warns_when_the_control_plane_has_not_synced() {
    let mut list = mk_status_list();
    list.control_plane.synced = false;
    list.proxies.clear();
    let text = render(&list);
    assert!(
        text.contains("warning: the control plane has not loaded"),
        "{text}"
    );
    assert!(text.ends_with("no proxies are connected\n"), "{text}");
}

#[test]
fn selects_by_id_name_or_unique_pod() {
    let list = mk_status_list();
    let ids = |r: Result<Vec<ProxyStatus>, SelectError>| -> Vec<String> {
        r.unwrap().into_iter().map(|p| name(&p)).collect()
    };
    assert_eq!(
        ids(select(&list.proxies, &list.proxies[2].id)),
        ["reviews-v2-5c9d.default"]
    );
    assert_eq!(
        ids(select(&list.proxies, "ratings-v1-8f2a.bookinfo")),
        ["ratings-v1-8f2a.bookinfo"]
    );
    assert_eq!(
        ids(select(&list.proxies, "ratings-v1-8f2a")),
        ["ratings-v1-8f2a.bookinfo"]
    );
    let err = select(&list.proxies, "nope").unwrap_err();
    assert_eq!(
        err.to_string(),
        "no proxy matches \"nope\"; connected proxies: ratings-v1-8f2a.bookinfo, productpage-v1-6b7f.default, reviews-v2-5c9d.default, ingress-gw-1.mesh-system"
    );
    assert_eq!(
        select(&[], "x").unwrap_err().to_string(),
        "no proxy matches \"x\"; no proxies are connected"
    );

    let mut twins = list.proxies.clone();
    let mut other = twins[1].clone();
    other.namespace = "staging".into();
    other.id.push_str("-staging");
    twins.push(other);
    let err = select(&twins, "productpage-v1-6b7f").unwrap_err();
    assert!(
        err.to_string()
            .contains("productpage-v1-6b7f.default, productpage-v1-6b7f.staging"),
        "{err}"
    );
}

#[test]
fn checks_that_everything_is_synced() {
    let mut list = mk_status_list();
    assert_eq!(
        check(&list).unwrap(),
        "3 of 4 proxies not SYNCED: ratings-v1-8f2a.bookinfo (NACKED), reviews-v2-5c9d.default (STALE), ingress-gw-1.mesh-system (STALE)"
    );
    list.proxies.retain(|p| p.sync == SyncState::Synced);
    assert_eq!(check(&list), None);
    list.control_plane.synced = false;
    assert!(check(&list).unwrap().contains("not loaded"));
}

#[test]
fn command_line_is_consistent() {
    use clap::CommandFactory as _;
    crate::Cli::command().debug_assert();
}

#[test]
fn lists_at_most_twenty_known_names() {
    let known: Vec<String> = (0..25).map(|i| format!("p{i}.ns")).collect();
    let text = known_list(&known);
    assert!(
        text.ends_with("p19.ns, and 5 more (see `meshctl proxy-status`)"),
        "{text}"
    );
}
