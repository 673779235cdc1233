//! The `dolittle-runtime` binary as an operator meets it: help, and configuration mistakes.

use std::process::Command;

fn runtime() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dolittle-runtime"))
}

#[test]
fn help_documents_every_flag_and_its_environment_variable() {
    let output = runtime().arg("--help").output().expect("run --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for variable in dolittle_runtime::config::Overrides::VARIABLES {
        if variable == "DOLITTLE_WORKING_DIR" {
            continue;
        }
        assert!(
            help.contains(variable),
            "--help does not mention {variable}:\n{help}"
        );
    }
}

#[test]
fn invalid_configuration_exits_with_a_message_naming_file_key_and_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join(".dolittle")).expect("folder");
    std::fs::write(
        dir.path().join(".dolittle/endpoints.json"),
        r#"{"private": {"port": "fifty"}}"#,
    )
    .expect("write");
    let output = runtime().current_dir(dir.path()).output().expect("run");
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("endpoints.json"), "{message}");
    assert!(message.contains("private.port"), "{message}");
    assert!(message.contains("is not a port number"), "{message}");
    assert!(
        !message.contains("backtrace"),
        "no stack traces for configuration mistakes: {message}"
    );
}

#[test]
fn a_mongodb_resources_file_is_refused_with_what_to_write_instead() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join(".dolittle")).expect("folder");
    std::fs::write(
        dir.path().join(".dolittle/resources.json"),
        r#"{"445f8ea8-1a6f-40d7-b2fc-796dba92dc44": {"eventStore": {"servers": ["localhost"], "database": "event_store", "maxConnectionPoolSize": 1000}}}"#,
    )
    .expect("write");
    let output = runtime().current_dir(dir.path()).output().expect("run");
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("MongoDB is not supported"), "{message}");
    assert!(
        message.contains("embedded") && message.contains("postgres"),
        "{message}"
    );
}
