//! `guest-inspect [--check] FILE.wasm...`: prints each component's imports and exports;
//! with `--check`, exits 1 if any breaks the sandbox's rules (see the library docs).

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut check = false;
    let mut files = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                println!("usage: guest-inspect [--check] FILE.wasm...");
                return ExitCode::SUCCESS;
            }
            _ => files.push(arg),
        }
    }
    if files.is_empty() {
        eprintln!("usage: guest-inspect [--check] FILE.wasm...");
        return ExitCode::from(2);
    }
    let mut failed = false;
    for file in &files {
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{file}: {e}");
                failed = true;
                continue;
            }
        };
        match guest_inspect::inspect(&bytes) {
            Err(e) => {
                eprintln!("{file}: {e}");
                failed = true;
            }
            Ok(surface) => {
                println!("{file} ({} bytes)", bytes.len());
                for i in &surface.imports {
                    println!("  import {i}");
                }
                for e in &surface.exports {
                    println!("  export {e}");
                }
                let extra = guest_inspect::beyond_minimal(&surface);
                if !extra.is_empty() {
                    println!(
                        "  note: also needs {} (a trap-only WASI linker is not enough)",
                        extra.join(", ")
                    );
                }
                if check {
                    for v in guest_inspect::violations(&surface) {
                        eprintln!("{file}: {v}");
                        failed = true;
                    }
                }
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
