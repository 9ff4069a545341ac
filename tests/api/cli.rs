//! The built `scamguard` binary, run as an operator would: `check` prints the verdict JSON and
//! `validate` reports list problems as `file:line: message` with a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_scamguard"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!(
            "scamguard-cli-{tag}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config and a lists directory of our own, independent of the shipped lists.
fn setup(tag: &str, config_extra: &str) -> (TempDir, String) {
    let dir = TempDir::new(tag);
    let lists = dir.path().join("lists");
    std::fs::create_dir_all(&lists).unwrap();
    std::fs::write(
        lists.join("scams.csv"),
        "# test list\n\
         pattern,action,category,reason,source,expires\n\
         +12025550143,block,scam,\"Fake bank, reported\",test,\n\
         +120255501XX,warn,robocall,Robocall range,test,\n\
         +12025550150,allow,partner,Our partner,test,\n\
         +12025550160,block,scam,Expired entry,test,2001-01-01\n",
    )
    .unwrap();
    let config = dir.path().join("scamguard.toml");
    std::fs::write(
        &config,
        format!(
            // The lists are the subject here: the plausibility signal, which would also flag these
            // fictional numbers, is off, and the store lives in the test's own folder.
            "[screening]\ndefault_country = \"US\"\n{config_extra}\n[lists]\ndir = \"{}\"\n\
             [store]\ndata_dir = \"{}\"\n[signals.plausibility]\nenabled = false\n",
            lists.display(),
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    (dir, config)
}

#[test]
fn check_prints_verdicts() {
    let (_dir, config) = setup("check", "anonymous = \"reject\"");
    // (caller, extra args, expected stdout line)
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "+1 (202) 555-0143",
            &[],
            r#"{"action":"block","caller":"+12025550143","reasons":[{"list":"scams","entry":"+12025550143","category":"scam","reason":"(+100) Fake bank, reported"}]}"#,
        ),
        (
            "2025550177",
            &[],
            r#"{"action":"warn","caller":"+12025550177","reasons":[{"list":"scams","entry":"+120255501XX","category":"robocall","reason":"(+50) Robocall range"}]}"#,
        ),
        (
            "+12025550150",
            &[],
            r#"{"action":"pass","caller":"+12025550150","reasons":[{"list":"scams","entry":"+12025550150","category":"partner","reason":"(+0) Our partner"},{"list":"policy","entry":"allow","category":"override","reason":"decided by the allow override"}]}"#,
        ),
        (
            "+14155550100",
            &["--display", "Alice"],
            r#"{"action":"pass","caller":"+14155550100","reasons":[]}"#,
        ),
        // an expired exact entry falls through to the X-pattern
        (
            "+12025550160",
            &[],
            r#"{"action":"warn","caller":"+12025550160","reasons":[{"list":"scams","entry":"+120255501XX","category":"robocall","reason":"(+50) Robocall range"}]}"#,
        ),
        // The entry shows what it scored; the emergency override is what let the call through.
        // (Before the single fold, the second fold re-read the already downgraded list verdict
        // and showed the entry as "(+0)".)
        (
            "+12025550143",
            &["--callee", "911"],
            r#"{"action":"pass","caller":"+12025550143","reasons":[{"list":"scams","entry":"+12025550143","category":"scam","reason":"(+100) Fake bank, reported"},{"list":"policy","entry":"911","category":"emergency","reason":"(+0) calls to emergency numbers are never blocked or warned"},{"list":"policy","entry":"emergency","category":"override","reason":"decided by the emergency override"}]}"#,
        ),
        (
            "anonymous",
            &["--anonymous"],
            r#"{"action":"block","caller":"anonymous","reasons":[{"list":"policy","entry":"anonymous","category":"anonymous","reason":"(+100) anonymous callers are refused (433)"}]}"#,
        ),
    ];
    for (caller, extra, want) in cases {
        let mut args = vec!["check", "--config", &config, "--caller", caller];
        args.extend_from_slice(extra);
        let o = run(&args);
        assert!(o.status.success(), "{caller}: {}", stderr(&o));
        assert_eq!(stdout(&o), format!("{want}\n"), "{caller}");
    }
}

#[test]
fn check_with_shipped_config_and_lists() {
    let o = run(&[
        "check",
        "--config",
        "config/scamguard.toml",
        "--caller",
        "1-800-642-7676",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with(r#"{"action":"block","caller":"+18006427676","reasons":[{"list":"do-not-originate","entry":"+18006427676","category":"dno""#),
        "{out}"
    );
}

#[test]
fn validate_reports_file_and_line() {
    let (dir, config) = setup("validate", "");
    let broken = dir.path().join("lists").join("broken.csv");
    std::fs::write(
        &broken,
        "# comment\npattern,action,category,reason\n+12025550143,block,scam,ok\n+12025550144,blok,scam,typo\n/.*/,warn,scam,too wide\n",
    )
    .unwrap();
    let o = run(&["validate", "--config", &config]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(
        lines[0],
        format!(
            "{}:4: action \"blok\" is not one of block, warn, allow",
            broken.display()
        )
    );
    assert!(
        lines[1].starts_with(&format!(
            "{}:5: regex /.*/ matches numbers of every length",
            broken.display()
        )),
        "{}",
        lines[1]
    );

    std::fs::remove_file(&broken).unwrap();
    let o = run(&["validate", "--config", &config]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).starts_with("OK: "), "{}", stdout(&o));
}

#[test]
fn validate_names_the_api_tls_file_at_fault() {
    let pem_dir = TempDir::new("tls-files");
    let pair = |name: &str| {
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let cert = pem_dir.path().join(format!("{name}.crt"));
        let key = pem_dir.path().join(format!("{name}.key"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        (cert.display().to_string(), key.display().to_string())
    };
    let (cert, key) = pair("api");
    let (_, other_key) = pair("other");
    let missing = pem_dir.path().join("missing.crt").display().to_string();
    // (cert, key, what validate must print; None: valid)
    let cases = [
        (&cert, &key, None),
        (&missing, &key, Some(format!("{missing}: cannot read"))),
        (
            &cert,
            &other_key,
            Some(format!(
                "{other_key}: this key does not match the certificate in {cert}"
            )),
        ),
    ];
    for (cert, key, want) in cases {
        let api = format!(
            "[api]\nlisten = \"0.0.0.0:8443\"\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\n"
        );
        let (_dir, config) = setup("tls", &api);
        let o = run(&["validate", "--config", &config]);
        match want {
            None => assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o)),
            Some(want) => {
                assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
                assert!(
                    stdout(&o).starts_with(&format!("{config}: api.tls: {want}")),
                    "{}",
                    stdout(&o)
                );
            }
        }
    }
}

#[test]
fn every_config_problem_is_printed_at_once() {
    let (_dir, config) = setup("problems", "[sip]\nmax_calls = 0\n[policy]\nwarn_at = 0\n");
    let sip = format!("{config}: sip.max_calls: must be at least 1, got 0");
    let policy = format!("{config}: policy: need 0 < warn_at <= block_at");
    let o = run(&["validate", "--config", &config]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains(&sip) && out.contains(&policy), "{out}");
    // Start-up refuses with the same list, and what `run` needs beyond it, before binding.
    let o = run(&["run", "--config", &config]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains(&sip) && err.contains(&policy), "{err}");
    assert!(
        err.contains(&format!("{config}: sip.next_hop is not set")),
        "{err}"
    );
}

#[test]
fn validate_names_a_bad_destination_retention() {
    // A section that is off is not checked.
    const ON: &str = "[callback]\nenabled = true\npeers = [\"192.0.2.1\"]\n";
    for bad in ["30", "30x", "0d", "1.5d"] {
        let (_dir, config) = setup(
            "retention",
            &format!("{ON}destination_retention = \"{bad}\"\n"),
        );
        let o = run(&["validate", "--config", &config]);
        assert_eq!(o.status.code(), Some(1), "{bad}: {}", stdout(&o));
        let err = stdout(&o);
        assert!(
            err.starts_with(&format!(
                "{config}: callback.destination_retention \"{bad}\": expected a whole number of \
                 seconds, minutes, hours or days, such as \"30d\""
            )),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let (_dir, config) = setup(
        "retention-ok",
        &format!("{ON}destination_retention = \"12h\"\n"),
    );
    let o = run(&["validate", "--config", &config]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn validate_shipped_config() {
    let o = run(&["validate", "--config", "config/scamguard.toml"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("OK: config/scamguard.toml valid; 4 lists"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1);
}

#[test]
fn errors_exit_non_zero_without_panicking() {
    let dir = TempDir::new("errors");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[screening]\ndefault_country = \"US\"\ncolour = \"red\"\n",
    )
    .unwrap();
    let bad = bad.display().to_string();
    // (args, expected start of stderr)
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec![
                "check",
                "--config",
                "/nonexistent/scamguard.toml",
                "--caller",
                "1",
            ],
            "/nonexistent/scamguard.toml: cannot read the config file".into(),
        ),
        (
            vec!["validate", "--config", &bad],
            format!("{bad}:3: unknown field `colour`"),
        ),
        (
            vec!["run", "--config", &bad],
            format!("{bad}:3: unknown field `colour`"),
        ),
    ];
    for (args, want) in cases {
        let o = run(&args);
        assert!(!o.status.success(), "{args:?}");
        let err = stderr(&o);
        assert!(err.starts_with(&want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
