use super::*;

fn ports(v: &[(u16, u16)]) -> Vec<PortRange> {
    v.iter()
        .map(|&(a, b)| PortRange::new(a, b).unwrap())
        .collect()
}

#[test]
fn ports_parse_and_reject_with_the_bad_value() {
    assert_eq!(parse_port("15001"), Ok(15001));
    assert_eq!(
        parse_port("80a"),
        Err("\"80a\" is not a port number (1-65535)".to_owned())
    );
    assert!(parse_port("0").is_err());
    assert!(parse_port("65536").is_err());
    assert!(parse_port("").is_err());
}

#[test]
fn port_lists_accept_ranges_spaces_and_empty_items() {
    assert_eq!(parse_port_list(""), Ok(vec![]));
    assert_eq!(
        parse_port_list(" 80, 443,,8000-8010, 9000:9001,80"),
        Ok(ports(&[(80, 80), (443, 443), (8000, 8010), (9000, 9001)]))
    );
    let err = parse_port_list("80,80a").unwrap_err();
    assert_eq!(err, "\"80a\" is not a port number (1-65535)");
    let err = parse_port_list("9000-8000").unwrap_err();
    assert!(err.contains("\"9000-8000\""), "{err}");
    assert!(parse_port_list("1-0").is_err());
    assert_eq!(
        ports(&[(8000, 8010), (80, 80)])
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["8000:8010", "80"]
    );
}

#[test]
fn selections_are_star_or_list() {
    assert_eq!(parse_port_selection("*"), Ok(Selection::All));
    assert_eq!(parse_port_selection(" * "), Ok(Selection::All));
    assert_eq!(parse_port_selection(""), Ok(Selection::Only(vec![])));
    assert_eq!(
        parse_port_selection("80"),
        Ok(Selection::Only(ports(&[(80, 80)])))
    );
    let err = parse_port_selection("80,*").unwrap_err();
    assert!(err.contains("mixes"), "{err}");
    assert_eq!(parse_cidr_selection("*"), Ok(Selection::All));
}

#[test]
fn cidrs_normalize_and_reject() {
    assert_eq!(
        parse_cidr("10.96.0.0/12").unwrap().to_string(),
        "10.96.0.0/12"
    );
    assert_eq!(parse_cidr("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
    assert_eq!(parse_cidr("10.1.2.3").unwrap().to_string(), "10.1.2.3/32");
    assert_eq!(parse_cidr("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
    assert_eq!(parse_cidr("fd00::1/8").unwrap().to_string(), "fd00::/8");
    assert_eq!(parse_cidr("::1").unwrap().to_string(), "::1/128");
    assert_eq!(parse_cidr("::/0").unwrap().to_string(), "::/0");
    let err = parse_cidr("10.0.0.0/33").unwrap_err();
    assert!(
        err.contains("\"10.0.0.0/33\"") && err.contains("0-32"),
        "{err}"
    );
    let err = parse_cidr("fd00::/129").unwrap_err();
    assert!(err.contains("0-128"), "{err}");
    let err = parse_cidr("example.com").unwrap_err();
    assert!(
        err.contains("\"example.com\" is not an IP address"),
        "{err}"
    );
    let err = parse_cidr_list("10.0.0.0/8,*").unwrap_err();
    assert!(err.contains("--include-outbound-cidrs"), "{err}");
    assert_eq!(parse_cidr_list("10.0.0.0/8, 10.0.0.1/8").unwrap().len(), 1);
}

#[test]
fn ids_parse() {
    assert_eq!(parse_id_list("0, 1000,1000"), Ok(vec![0, 1000]));
    let err = parse_id_list("root").unwrap_err();
    assert_eq!(err, "\"root\" is not a numeric uid/gid");
    assert!(parse_id_list("-1").is_err());
    assert!(parse_id_list("4294967295").is_err());
}

#[test]
fn cross_flag_checks() {
    assert!(Config::default().validate().is_ok());
    let same = Config {
        inbound_port: 15001,
        ..Config::default()
    };
    let err = same.validate().unwrap_err().to_string();
    assert!(
        err.contains("--outbound-port and --inbound-port must differ"),
        "{err}"
    );
    let reserved = Config {
        inbound_port: 15008,
        ..Config::default()
    };
    let err = reserved.validate().unwrap_err().to_string();
    assert!(err.contains("--inbound-port: 15008"), "{err}");
}
