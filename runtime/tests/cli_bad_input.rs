//! Bad input never panics, always exits non-zero with an error naming the problem, and
//! leaves the database exactly as it was.

mod support;

use support::Airlock;

/// A data dir holding one credential with a value, keyed by `key`.
fn populated(key: &str) -> Airlock {
    let al = Airlock::new().with_env("AIRLOCK_VAULT_KEY", key);
    al.add_with_value("github", "api.github.com", "ghp_original");
    al
}

fn with_env_only(al: Airlock, env: &[(&str, &str)]) -> Airlock {
    Airlock {
        dir: al.dir,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[test]
fn wrong_key_is_refused_before_anything_is_written() {
    let key = fernet::Fernet::generate_key();
    let al = populated(&key);
    let before = al.snapshot();
    let other = fernet::Fernet::generate_key();
    let al = with_env_only(al, &[("AIRLOCK_VAULT_KEY", &other)]);
    let msg = "none of the 1 vault key(s) from $AIRLOCK_VAULT_KEY opens this vault";
    al.run(&["credentials", "get-value", "github"])
        .fails_with(msg);
    al.run_with_stdin(&["credentials", "set-value", "github"], b"new-value")
        .fails_with(msg);
    al.run(&["keys", "rotate"]).fails_with(msg);
    // Metadata stays usable without the right key.
    al.run(&["credentials", "list"]).ok();
    assert_eq!(al.snapshot(), before);
}

#[test]
fn malformed_keys_are_named_by_source() {
    let key = fernet::Fernet::generate_key();
    let al = populated(&key);
    let before = al.snapshot();
    let al = with_env_only(al, &[("AIRLOCK_VAULT_KEY", "not-a-fernet-key")]);
    let run = al
        .run(&["credentials", "list"])
        .fails_with("$AIRLOCK_VAULT_KEY value 1: not a Fernet key");
    assert!(
        !run.stderr.contains("not-a-fernet-key"),
        "the key text is not echoed"
    );
    let al = with_env_only(al, &[("AIRLOCK_VAULT_KEYS", &format!("{key},short"))]);
    al.run(&["credentials", "list"])
        .fails_with("$AIRLOCK_VAULT_KEYS entry 2: not a Fernet key");
    // A damaged key file.
    let al = with_env_only(al, &[]);
    std::fs::write(al.data_dir().join("vault.key"), "garbage\n").unwrap();
    al.run(&["credentials", "list"])
        .fails_with("vault.key key 1: not a Fernet key");
    assert_eq!(al.snapshot(), before);
}

#[test]
fn missing_and_duplicate_credentials() {
    let al = populated(&fernet::Fernet::generate_key());
    let before = al.snapshot();
    al.run(&["credentials", "get-value", "nope"])
        .fails_with("credential 'nope' not found");
    al.run(&["credentials", "show", "nope"])
        .fails_with("credential 'nope' not found");
    al.run_with_stdin(&["credentials", "set-value", "nope"], b"v")
        .fails_with("credential 'nope' not found");
    al.run(&["credentials", "rm", "nope"])
        .fails_with("credential 'nope' not found");
    al.run(&[
        "credentials",
        "add",
        "--id",
        "github",
        "--label",
        "Other",
        "--auth-type",
        "bearer",
    ])
    .fails_with("credential 'github' already exists");
    al.run(&["toolkits", "bind", "nope", "github"])
        .fails_with("toolkit 'nope' not found");
    al.run(&["toolkits", "bind", "default", "github"])
        .fails_with("the default toolkit sees every credential");
    al.run(&["toolkits", "add", "--id", "default"])
        .fails_with("toolkit 'default' already exists");
    assert_eq!(al.snapshot(), before);
    assert_eq!(al.reveal("github"), "ghp_original");
}

#[test]
fn bad_values_and_fields() {
    let al = populated(&fernet::Fernet::generate_key());
    let before = al.snapshot();
    al.run_with_stdin(&["credentials", "set-value", "github"], b"ok\xff\xfe")
        .fails_with("not valid UTF-8");
    al.run_with_stdin(&["credentials", "set-value", "github"], b"\n")
        .fails_with("the value is empty");
    al.run_with_stdin(
        &["credentials", "set-value", "github"],
        &vec![b'a'; 1024 * 1024 + 1],
    )
    .fails_with("more than the 1048576-byte limit");
    al.run(&[
        "credentials",
        "add",
        "--id",
        "has space",
        "--label",
        "L",
        "--auth-type",
        "bearer",
    ])
    .fails_with("invalid credential id");
    al.run(&[
        "credentials",
        "add",
        "--id",
        "x",
        "--label",
        "L",
        "--auth-type",
        "bearer",
        "--attributes",
        "[1,2]",
    ])
    .fails_with("--attributes must be a JSON object");
    al.run(&[
        "credentials",
        "add",
        "--id",
        "x",
        "--label",
        "L",
        "--auth-type",
        "bearer",
        "--attributes",
        "{oops",
    ])
    .fails_with("--attributes is not valid JSON");
    assert_eq!(al.snapshot(), before);
    assert_eq!(al.reveal("github"), "ghp_original");
}

#[test]
fn unknown_backend_names() {
    let key = fernet::Fernet::generate_key();
    let al = populated(&key);
    let before = al.snapshot();
    al.run(&[
        "credentials",
        "add",
        "--id",
        "x",
        "--label",
        "L",
        "--auth-type",
        "bearer",
        "--backend",
        "hashicorp",
    ])
    .fails_with("unknown backend 'hashicorp' (configured: fernet)");
    let al = with_env_only(
        al,
        &[
            ("AIRLOCK_VAULT_KEY", &key),
            ("JENTIC_CREDENTIAL_BACKEND", "hashicorp"),
        ],
    );
    al.run(&["credentials", "list"])
        .fails_with("unknown backend 'hashicorp'");
    // Jentic Mini's `bitwarden` needs its URL or token.
    let al = with_env_only(
        al,
        &[
            ("AIRLOCK_VAULT_KEY", &key),
            ("JENTIC_CREDENTIAL_BACKEND", "bitwarden"),
        ],
    );
    al.run(&["credentials", "list"])
        .fails_with("needs JENTIC_BITWARDEN_URL (bw serve) or JENTIC_BITWARDEN_TOKEN");
    assert_eq!(al.snapshot(), before);
}

#[test]
fn unknown_config_keys_name_the_line() {
    let al = Airlock::new();
    let cfg = al.dir.path().join("airlock.toml");
    std::fs::write(&cfg, "default_backend = \"fernet\"\ndata_dri = \"x\"\n").unwrap();
    al.run(&["--config", cfg.to_str().unwrap(), "status"])
        .fails_with("line 2");
    assert!(!al.data_dir().exists());
}

#[test]
fn read_only_data_dir() {
    use std::os::unix::fs::PermissionsExt;
    let al = populated(&fernet::Fernet::generate_key());
    let before = al.snapshot();
    let data = al.data_dir();
    let set_mode = |path: &std::path::Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    // Root ignores permission bits, so as root the command runs as `nobody`, for whom
    // the directory is read-only (owned by root, mode 0555).
    let root = unsafe { libc_geteuid() } == 0;
    set_mode(al.dir.path(), 0o755);
    for entry in std::fs::read_dir(&data).unwrap() {
        set_mode(&entry.unwrap().path(), 0o644);
    }
    set_mode(&data, 0o555);
    let run = |args: &[&str], stdin: &[u8]| {
        use std::io::Write;
        use std::os::unix::process::CommandExt;
        let mut cmd = al.command(args);
        if root {
            cmd.uid(65534).gid(65534);
        }
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        support::finish(child.wait_with_output().unwrap())
    };
    run(&["credentials", "set-value", "github"], b"new").fails_with("is read-only");
    run(
        &[
            "credentials",
            "add",
            "--id",
            "x",
            "--label",
            "L",
            "--auth-type",
            "bearer",
        ],
        b"",
    )
    .fails_with("is read-only");
    // A data directory that cannot even be created.
    let inner = data.join("sub");
    let mut cmd = std::process::Command::new(support::airlock_bin());
    cmd.args(["--data-dir", inner.to_str().unwrap(), "status"]);
    if root {
        use std::os::unix::process::CommandExt;
        cmd.uid(65534).gid(65534);
    }
    support::finish(cmd.output().unwrap()).fails_with("cannot create data directory");
    set_mode(&data, 0o700);
    assert_eq!(al.snapshot(), before);
    assert_eq!(al.reveal("github"), "ghp_original");
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
