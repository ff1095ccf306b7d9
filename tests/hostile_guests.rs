//! Hostile guests (issue 9): guests that spin with interrupts off, rewrite their own code
//! in a loop, run code at ever-new addresses, thrash their page tables, storm the CPU with
//! interrupts, or triple-fault. Each runs as `crane86 run` for a while; its resident memory
//! must stay under a bound, and SIGTERM must end the process within a second (a triple fault ends the run by itself,
//! with its own status and message).
//!
//! The one `unsafe` is `kill(2)` on a child this test spawned and has not waited for yet,
//! so its pid cannot have been reused.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use iced_x86::code_asm::*;

mod common;

/// Resident memory a hostile guest may make crane86 use: its 16 MiB of RAM, the code
/// arena it touches, Cranelift and the decoded blocks, with room to spare. A leak per SMC
/// invalidation or per interrupt would pass it within the seconds each guest runs.
const RSS_LIMIT_KIB: u64 = 256 * 1024;
/// How long each guest runs before it is measured and terminated.
const RUN: Duration = Duration::from_secs(3);

fn write_image(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("hostile-guests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A multiboot image of `code` (see [`common::multiboot_image`]) in a file.
fn multiboot(name: &str, code: &[u8]) -> std::path::PathBuf {
    write_image(name, &common::multiboot_image(code))
}

fn rss_kib(child: &Child) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Runs crane86 with `args` for [`RUN`], checks its resident memory, sends SIGTERM and
/// requires it gone within a second.
fn survive_and_terminate(what: &str, args: &[&str]) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crane86"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("crane86 starts");
    std::thread::sleep(RUN);
    assert!(
        child.try_wait().unwrap().is_none(),
        "{what}: the guest must still be running"
    );
    let rss = rss_kib(&child);
    assert!(
        rss < RSS_LIMIT_KIB,
        "{what}: {rss} KiB resident, over {RSS_LIMIT_KIB} KiB"
    );
    // SAFETY: sending a signal to our own child process, whose pid is valid until waited.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "{what}: still running a second after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_guest_spinning_with_interrupts_off_ends_on_sigterm() {
    // cli; jmp $
    let image = multiboot("spin.mb", &[0xfa, 0xeb, 0xfe]);
    survive_and_terminate(
        "IF=0 spin",
        &["run", "--multiboot", image.to_str().unwrap()],
    );
}

#[test]
fn a_self_modifying_loop_keeps_memory_bounded() {
    // Every iteration stores into the page it runs from: each store invalidates the
    // page's translations, which the next iteration translates again.
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    let mut patched = a.create_label();
    a.set_label(&mut top).unwrap();
    a.inc(rcx).unwrap();
    // The byte stored is the NOP already there: the code stays the same, and every
    // store still lands in a page holding translations.
    a.mov(byte_ptr(patched), 0x90).unwrap();
    a.set_label(&mut patched).unwrap();
    a.nop().unwrap();
    a.add(rax, 1).unwrap();
    a.jmp(top).unwrap();
    let code = a.assemble(0x1000).unwrap();
    let image = write_image("smc.bin", &code);
    for tier in ["jit", "auto"] {
        survive_and_terminate(
            &format!("SMC loop ({tier})"),
            &[
                "run",
                "--flat",
                image.to_str().unwrap(),
                "--entry",
                "0x1000",
                "--tier",
                tier,
            ],
        );
    }
}

/// A flat 64-bit guest that fills `SPRAY_BYTES` of RAM from `SPRAY_BASE` with RET and then
/// calls every byte of it in turn, forever: each call is a new one-instruction block, so
/// the translation cache sees a distinct block per call (about 16 million per pass).
fn block_spray() -> Vec<u8> {
    const SPRAY_BASE: u64 = 0x10_0000;
    const SPRAY_BYTES: u64 = 13 << 20;
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    let mut next = a.create_label();
    a.mov(rdi, SPRAY_BASE).unwrap();
    a.mov(rcx, SPRAY_BYTES / 8).unwrap();
    a.mov(rax, 0xc3c3_c3c3_c3c3_c3c3u64).unwrap();
    a.rep().stosq().unwrap();
    a.set_label(&mut top).unwrap();
    a.mov(rbx, SPRAY_BASE).unwrap();
    a.set_label(&mut next).unwrap();
    a.call(rbx).unwrap();
    a.inc(rbx).unwrap();
    a.mov(rax, SPRAY_BASE + SPRAY_BYTES).unwrap();
    a.cmp(rbx, rax).unwrap();
    a.jb(next).unwrap();
    a.jmp(top).unwrap();
    a.assemble(0x1000).unwrap()
}

#[test]
fn a_block_spray_keeps_memory_bounded() {
    // Without a bound on the decoded blocks, their bookkeeping grows by hundreds of bytes
    // per call: past the RSS limit within the run. The cache's capacity flushes keep it
    // bounded, at the default size and at the smallest.
    let image = write_image("spray.bin", &block_spray());
    let path = image.to_str().unwrap();
    let base = ["run", "--flat", path, "--entry", "0x1000"];
    survive_and_terminate("block spray", &base);
    survive_and_terminate(
        "block spray (--code-cache 1)",
        &[&base[..], &["--code-cache", "1"]].concat(),
    );
}

#[test]
fn page_table_thrash_keeps_memory_bounded() {
    let code = common::page_table_churn_code();
    let image = write_image("pt-thrash.bin", &code);
    survive_and_terminate(
        "page-table thrash",
        &[
            "run",
            "--flat",
            image.to_str().unwrap(),
            "--entry",
            "0x1000",
        ],
    );
}

#[test]
fn an_interrupt_storm_keeps_memory_bounded() {
    // The local APIC timer, periodic with the smallest count, into a handler that only
    // signals EOI; the main loop counts.
    let code = common::apic_storm_code(1);
    let image = multiboot("irq-storm.mb", &code);
    survive_and_terminate(
        "interrupt storm",
        &["run", "--multiboot", image.to_str().unwrap()],
    );
}

/// A guest that triple-faults at once, as [`a_triple_fault_ends_the_run_with_its_message`].
fn triple_fault_image(name: &str) -> std::path::PathBuf {
    // An IDT limit of 0 makes every exception fault again: #UD -> #GP -> #DF -> shutdown.
    const BASE: u32 = 0x10_0020;
    const IDTR: u32 = BASE + 0x40;
    let mut a = CodeAssembler::new(32).unwrap();
    a.lidt(dword_ptr(IDTR)).unwrap();
    a.ud2().unwrap();
    let mut code = a.assemble(u64::from(BASE)).unwrap();
    code.resize(0x40, 0xcc);
    code.extend_from_slice(&[0; 6]);
    multiboot(name, &code)
}

#[test]
fn a_triple_fault_loop_keeps_memory_bounded() {
    // Without --no-reboot every triple fault reboots the machine (fresh RAM, devices and
    // translation cache, the kernel loaded again), which triple-faults again, forever.
    let image = triple_fault_image("triple-loop.mb");
    survive_and_terminate(
        "triple-fault loop",
        &["run", "--multiboot", image.to_str().unwrap()],
    );
}

#[test]
fn a_triple_fault_ends_the_run_with_its_message() {
    let image = triple_fault_image("triple.mb");
    let t0 = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_crane86"))
        .args(["run", "--no-reboot", "--multiboot", image.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(120), "{err}");
    assert!(err.contains("triple fault"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(10));
}

/// Distinct stubs in the checksum guest: more than a 1 MiB cache holds (about 1700).
const STUBS: u32 = 3000;
/// Passes over the stubs.
const PASSES: u32 = 2;
/// Where the stubs lie in the checksum guest (its image is loaded at 0x1000).
const STUB_BASE: u64 = 0x1_1000;

/// A flat 64-bit guest that calls `STUBS` distinct stubs `add rbx, 7 * i + 1; ret`,
/// `PASSES` times over, prints RBX in hex on COM1 and halts. Returns the image and the
/// expected output.
fn checksum_guest() -> (Vec<u8>, String) {
    let mut a = CodeAssembler::new(64).unwrap();
    let (mut pass, mut stub, mut digit, mut decimal) = (
        a.create_label(),
        a.create_label(),
        a.create_label(),
        a.create_label(),
    );
    a.xor(ebx, ebx).unwrap();
    a.mov(r12d, PASSES).unwrap();
    a.set_label(&mut pass).unwrap();
    a.mov(r13, STUB_BASE).unwrap();
    a.mov(r14d, STUBS).unwrap();
    a.set_label(&mut stub).unwrap();
    a.call(r13).unwrap();
    a.add(r13, 16).unwrap();
    a.dec(r14d).unwrap();
    a.jnz(stub).unwrap();
    a.dec(r12d).unwrap();
    a.jnz(pass).unwrap();
    // Sixteen hex digits of RBX, most significant first.
    a.mov(ecx, 16).unwrap();
    a.set_label(&mut digit).unwrap();
    a.rol(rbx, 4).unwrap();
    a.mov(eax, ebx).unwrap();
    a.and(eax, 15).unwrap();
    a.cmp(eax, 10).unwrap();
    a.jb(decimal).unwrap();
    a.add(eax, i32::from(b'a' - b'0' - 10)).unwrap();
    a.set_label(&mut decimal).unwrap();
    a.add(eax, i32::from(b'0')).unwrap();
    a.mov(edx, 0x3f8).unwrap();
    a.out(dx, al).unwrap();
    a.dec(ecx).unwrap();
    a.jnz(digit).unwrap();
    a.hlt().unwrap();
    let mut image = a.assemble(0x1000).unwrap();
    image.resize((STUB_BASE - 0x1000) as usize, 0xcc);
    let mut sum = 0u64;
    for i in 0..STUBS {
        let k = 7 * i + 1;
        sum += u64::from(k);
        image.extend_from_slice(&[0x48, 0x81, 0xc3]);
        image.extend_from_slice(&k.to_le_bytes());
        image.push(0xc3);
        image.resize(image.len() + 8, 0xcc);
    }
    (image, format!("{:016x}", sum * u64::from(PASSES)))
}

#[test]
fn a_tiny_code_cache_runs_guests_correctly() {
    // The bundled guests fit in the smallest cache; they must still run as with the default.
    for name in ["crc32", "sieve", "sort", "strings"] {
        for bits in [64, 32, 16] {
            let Some(g) = crane86_guests::by_name(name, bits) else {
                continue;
            };
            let o = Command::new(env!("CARGO_BIN_EXE_crane86"))
                .args(["run", "--guest", name, "--mode", &bits.to_string()])
                .args(["--code-cache", "1", "--tier", "jit"])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let out = String::from_utf8_lossy(&o.stdout);
            assert_eq!(out, g.expected_output, "{name} ({bits}-bit)");
        }
    }
    // A guest whose blocks do not fit: its checksum survives every capacity flush, in each
    // tier, and the flushes are counted.
    let (image, want) = checksum_guest();
    let image = write_image("checksum.bin", &image);
    for tier in ["interp", "jit", "auto"] {
        let t0 = Instant::now();
        let o = Command::new(env!("CARGO_BIN_EXE_crane86"))
            .args([
                "run",
                "--flat",
                image.to_str().unwrap(),
                "--entry",
                "0x1000",
            ])
            .args(["--code-cache", "1", "--tier", tier, "--stats=json"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{tier}: {err}");
        assert_eq!(String::from_utf8_lossy(&o.stdout), want, "{tier}");
        let stats: serde_json::Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
        let capacity = &stats["invalidations"]["capacity"];
        let flushes = capacity["flushes"].as_u64().unwrap();
        assert!(flushes >= u64::from(PASSES), "{tier}: {capacity}");
        assert!(
            capacity["evicted"].as_u64().unwrap() > u64::from(STUBS),
            "{tier}"
        );
        eprintln!(
            "checksum guest, --code-cache 1 --tier {tier}: {:.2} s, {flushes} capacity flushes",
            t0.elapsed().as_secs_f64()
        );
    }
}
