//! Test guests for crane86: small programs assembled in Rust with iced-x86's
//! [`CodeAssembler`], each with the output it must produce computed natively in Rust by the
//! same algorithm.
//!
//! Every guest runs on a flat machine (`Machine::load_flat`): it is loaded at [`CODE_ADDR`],
//! starts at its first byte, writes its result as ASCII text to port 0x3F8 one byte at a time
//! (`out dx, al`) and ends with `mov al, 0; out 0xf4, al` (isa-debug-exit with status 0).
//!
//! The code is written once over the bitness: data arithmetic uses 32-bit registers in every
//! mode (in real mode through the operand-size prefix), addresses use the native registers in
//! 64-bit mode and 32-bit registers otherwise (in real mode through the address-size prefix,
//! with all data inside the first 64 KiB segment).
//!
//! ```
//! let g = crane86_guests::by_name("crc32", 64).unwrap();
//! assert!(g.expected_output.starts_with("crc32="));
//! ```
#![deny(missing_docs)]

use iced_x86::code_asm::*;

/// Where every guest is loaded, and its entry point.
pub const CODE_ADDR: u64 = 0x1000;

/// A test guest.
#[derive(Clone, Debug)]
pub struct Guest {
    /// Its name (`sieve`, `sort`, `crc32`, `strings`).
    pub name: &'static str,
    /// 16 (real mode), 32 (flat protected mode) or 64 (long mode).
    pub bitness: u32,
    /// The flat binary.
    pub image: Vec<u8>,
    /// Where to load it.
    pub load_addr: u64,
    /// Where to start it.
    pub entry: u64,
    /// What it writes to port 0x3F8.
    pub expected_output: String,
}

type Builder = fn(u32) -> Guest;

/// Every guest with the bitnesses it supports.
const GUESTS: &[(&str, &[u32], Builder)] = &[
    ("sieve", &[64, 32, 16], sieve),
    ("sort", &[64, 32, 16], sort),
    ("crc32", &[64, 32, 16], crc32),
    ("strings", &[64, 32], strings),
];

/// Every guest in every mode it supports.
pub fn all() -> Vec<Guest> {
    GUESTS
        .iter()
        .flat_map(|&(_, bits, build)| bits.iter().map(move |&b| build(b)))
        .collect()
}

/// The guest `name` in `bitness`, if it exists in that mode.
pub fn by_name(name: &str, bitness: u32) -> Option<Guest> {
    GUESTS
        .iter()
        .find(|(n, bits, _)| *n == name && bits.contains(&bitness))
        .map(|(_, _, build)| build(bitness))
}

/// Names of all guests.
pub fn names() -> impl Iterator<Item = &'static str> {
    GUESTS.iter().map(|g| g.0)
}

// ---------------------------------------------------------------------------------------------
// A thin layer over CodeAssembler that hides the bitness.

/// Address registers, mapped to the native width.
#[derive(Clone, Copy, Debug)]
enum R {
    A,
    B,
    C,
    D,
    Si,
    Di,
    Bp,
}

fn r64(r: R) -> AsmRegister64 {
    match r {
        R::A => rax,
        R::B => rbx,
        R::C => rcx,
        R::D => rdx,
        R::Si => rsi,
        R::Di => rdi,
        R::Bp => rbp,
    }
}

fn r32(r: R) -> AsmRegister32 {
    match r {
        R::A => eax,
        R::B => ebx,
        R::C => ecx,
        R::D => edx,
        R::Si => esi,
        R::Di => edi,
        R::Bp => ebp,
    }
}

struct G {
    a: CodeAssembler,
    bits: u32,
}

impl G {
    fn new(bits: u32) -> G {
        G {
            a: CodeAssembler::new(bits).expect("valid bitness"),
            bits,
        }
    }

    /// `[base + index*scale + disp]` with native-width (64-bit) or 32-bit address registers.
    fn mem(&self, base: R, index: Option<(R, u32)>, disp: i32) -> AsmMemoryOperand {
        let m: AsmMemoryOperand = if self.bits == 64 {
            let m: AsmMemoryOperand = r64(base).into();
            match index {
                Some((i, s)) => m + r64(i) * s,
                None => m,
            }
        } else {
            let m: AsmMemoryOperand = r32(base).into();
            match index {
                Some((i, s)) => m + r32(i) * s,
                None => m,
            }
        };
        m + disp
    }

    /// `[base + disp]`.
    fn at(&self, base: R, disp: i32) -> AsmMemoryOperand {
        self.mem(base, None, disp)
    }

    /// `[base + index*scale + disp]`.
    fn ix(&self, base: R, index: R, scale: u32, disp: i32) -> AsmMemoryOperand {
        self.mem(base, Some((index, scale)), disp)
    }

    fn push(&mut self, r: R) {
        if self.bits == 64 {
            self.a.push(r64(r))
        } else {
            self.a.push(r32(r))
        }
        .unwrap()
    }

    fn pop(&mut self, r: R) {
        if self.bits == 64 {
            self.a.pop(r64(r))
        } else {
            self.a.pop(r32(r))
        }
        .unwrap()
    }

    fn label(&mut self) -> CodeLabel {
        self.a.create_label()
    }

    fn set(&mut self, l: &mut CodeLabel) {
        self.a.set_label(l).unwrap();
    }

    /// Writes `s` to the serial port. Clobbers eax, edx.
    fn print_str(&mut self, s: &str) {
        let a = &mut self.a;
        a.mov(edx, 0x3f8).unwrap();
        for b in s.bytes() {
            a.mov(al, b as u32).unwrap();
            a.out(dx, al).unwrap();
        }
    }

    /// Writes eight lower-case hex digits of `src` to the serial port. Clobbers eax, ecx,
    /// edx. Uses only add/adc (no shifts) to extract the nibbles.
    fn print_hex(&mut self, src: AsmRegister32) {
        if src != ecx {
            self.a.mov(ecx, src).unwrap();
        }
        self.a.mov(edx, 0x3f8).unwrap();
        for _ in 0..8 {
            let mut digit = self.label();
            self.a.xor(eax, eax).unwrap();
            for _ in 0..4 {
                self.a.add(ecx, ecx).unwrap();
                self.a.adc(eax, eax).unwrap();
            }
            self.a.add(eax, b'0' as i32).unwrap();
            self.a.cmp(eax, b'9' as i32).unwrap();
            self.a.jbe(digit).unwrap();
            self.a.add(eax, (b'a' - b'9' - 1) as i32).unwrap();
            self.set(&mut digit);
            self.a.out(dx, al).unwrap();
        }
    }

    /// Prints `label` then the dword at `m` in hex. Clobbers eax, ecx, edx.
    fn print_var(&mut self, label: &str, m: AsmMemoryOperand) {
        self.print_str(label);
        self.a.mov(ecx, dword_ptr(m)).unwrap();
        self.print_hex(ecx);
    }

    /// isa-debug-exit with status 0.
    fn exit(&mut self) {
        self.a.mov(al, 0).unwrap();
        self.a.out(0xf4, al).unwrap();
        // Not reached: stop for good if the exit port is missing.
        let mut l = self.label();
        self.set(&mut l);
        self.a.hlt().unwrap();
        self.a.jmp(l).unwrap();
    }

    fn finish(mut self, name: &'static str, expected_output: String) -> Guest {
        let image = self.a.assemble(CODE_ADDR).expect("guest assembles");
        Guest {
            name,
            bitness: self.bits,
            image,
            load_addr: CODE_ADDR,
            entry: CODE_ADDR,
            expected_output,
        }
    }
}

/// Where a guest's data lives: inside the first 64 KiB in real mode, at 1 MiB otherwise.
fn data_base(bits: u32) -> u32 {
    if bits == 16 {
        0x4000
    } else {
        0x10_0000
    }
}

/// The LCG of `sort` and `strings` (glibc's `rand` constants).
fn lcg_a(x: u32) -> u32 {
    x.wrapping_mul(1_103_515_245).wrapping_add(12345)
}

/// The LCG of `crc32` (Numerical Recipes).
fn lcg_b(x: u32) -> u32 {
    x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223)
}

// ---------------------------------------------------------------------------------------------
// sieve: primes below N; prints their count and sum.

fn sieve_n(bits: u32) -> u32 {
    if bits == 16 {
        30_000
    } else {
        100_000
    }
}

/// The native model of `sieve`.
fn sieve_expected(n: u32) -> String {
    let mut comp = vec![false; n as usize];
    let (mut count, mut sum) = (0u32, 0u32);
    for i in 2..n {
        if !comp[i as usize] {
            count += 1;
            sum = sum.wrapping_add(i);
            let mut j = i as u64 * i as u64;
            while j < u64::from(n) {
                comp[j as usize] = true;
                j += u64::from(i);
            }
        }
    }
    format!("sieve n={n} count={count:08x} sum={sum:08x}\n")
}

fn sieve(bits: u32) -> Guest {
    let n = sieve_n(bits);
    let mut g = G::new(bits);
    let base = data_base(bits);
    // Variables below the array.
    let (v_count, v_sum) = (0, 4);
    let arr = 16;
    g.a.mov(ebp, base).unwrap();
    // a[i] = 1 for all i, then a[0] = a[1] = 0.
    let mut init = g.label();
    g.a.xor(ecx, ecx).unwrap();
    g.set(&mut init);
    g.a.mov(byte_ptr(g.ix(R::Bp, R::C, 1, arr)), 1).unwrap();
    g.a.inc(ecx).unwrap();
    g.a.cmp(ecx, n as i32).unwrap();
    g.a.jb(init).unwrap();
    g.a.mov(byte_ptr(g.at(R::Bp, arr)), 0).unwrap();
    g.a.mov(byte_ptr(g.at(R::Bp, arr + 1)), 0).unwrap();
    // for i (ebx) with i*i (esi) < n: if a[i], clear i*i, i*i+i, ...
    let (mut outer, mut inner, mut next, mut count) = (g.label(), g.label(), g.label(), g.label());
    g.a.mov(ebx, 2).unwrap();
    g.a.mov(esi, 4).unwrap();
    g.set(&mut outer);
    g.a.cmp(esi, n as i32).unwrap();
    g.a.jae(count).unwrap();
    g.a.cmp(byte_ptr(g.ix(R::Bp, R::B, 1, arr)), 0).unwrap();
    g.a.je(next).unwrap();
    g.a.mov(ecx, esi).unwrap();
    g.set(&mut inner);
    g.a.mov(byte_ptr(g.ix(R::Bp, R::C, 1, arr)), 0).unwrap();
    g.a.add(ecx, ebx).unwrap();
    g.a.cmp(ecx, n as i32).unwrap();
    g.a.jb(inner).unwrap();
    g.set(&mut next);
    // (i+1)^2 = i^2 + 2i + 1
    g.a.lea(esi, g.ix(R::Si, R::B, 2, 1)).unwrap();
    g.a.inc(ebx).unwrap();
    g.a.jmp(outer).unwrap();
    // count and sum the survivors
    let (mut scan, mut skip) = (g.label(), g.label());
    g.set(&mut count);
    g.a.xor(ecx, ecx).unwrap();
    g.a.xor(edi, edi).unwrap();
    g.a.xor(ebx, ebx).unwrap();
    g.set(&mut scan);
    g.a.cmp(byte_ptr(g.ix(R::Bp, R::C, 1, arr)), 0).unwrap();
    g.a.je(skip).unwrap();
    g.a.inc(edi).unwrap();
    g.a.add(ebx, ecx).unwrap();
    g.set(&mut skip);
    g.a.inc(ecx).unwrap();
    g.a.cmp(ecx, n as i32).unwrap();
    g.a.jb(scan).unwrap();
    g.a.mov(dword_ptr(g.at(R::Bp, v_count)), edi).unwrap();
    g.a.mov(dword_ptr(g.at(R::Bp, v_sum)), ebx).unwrap();
    g.print_str(&format!("sieve n={n}"));
    g.print_var(" count=", g.at(R::Bp, v_count));
    g.print_var(" sum=", g.at(R::Bp, v_sum));
    g.print_str("\n");
    g.exit();
    g.finish("sieve", sieve_expected(n))
}

// ---------------------------------------------------------------------------------------------
// sort: LCG numbers, recursive quicksort (Hoare partition), FNV-style checksum.

const SORT_SEED: u32 = 0x1234_5678;

fn sort_n(bits: u32) -> u32 {
    if bits == 16 {
        1000
    } else {
        5000
    }
}

/// The native model of `sort`.
fn sort_expected(n: u32) -> String {
    let mut x = SORT_SEED;
    let mut v: Vec<u32> = (0..n)
        .map(|_| {
            x = lcg_a(x);
            x
        })
        .collect();
    v.sort_unstable();
    let inv = v.windows(2).filter(|w| w[0] > w[1]).count() as u32;
    let h = v
        .iter()
        .fold(0x811c_9dc5u32, |h, &e| (h ^ e).wrapping_mul(0x0100_0193));
    format!(
        "sort n={n} min={:08x} max={:08x} inv={inv:08x} h={h:08x}\n",
        v[0],
        v[n as usize - 1]
    )
}

fn sort(bits: u32) -> Guest {
    let n = sort_n(bits);
    let mut g = G::new(bits);
    let base = data_base(bits);
    let (v_inv, v_h) = (0, 4);
    let arr = 16;
    let mut qsort = g.label();
    let mut main = g.label();
    g.a.jmp(main).unwrap();

    // qsort(lo = esi, hi = edi), inclusive, signed indices; array at ebp + arr.
    // Clobbers eax, ebx, ecx, edx, esi, edi.
    let (mut done, mut left, mut right, mut parted) = (g.label(), g.label(), g.label(), g.label());
    g.set(&mut qsort);
    g.a.cmp(esi, edi).unwrap();
    g.a.jge(done).unwrap();
    g.a.mov(eax, esi).unwrap();
    g.a.add(eax, edi).unwrap();
    g.a.shr(eax, 1).unwrap();
    g.a.mov(eax, dword_ptr(g.ix(R::Bp, R::A, 4, arr))).unwrap();
    g.a.mov(ecx, esi).unwrap();
    g.a.dec(ecx).unwrap();
    g.a.mov(edx, edi).unwrap();
    g.a.inc(edx).unwrap();
    g.set(&mut left);
    g.a.inc(ecx).unwrap();
    g.a.cmp(dword_ptr(g.ix(R::Bp, R::C, 4, arr)), eax).unwrap();
    g.a.jb(left).unwrap();
    g.set(&mut right);
    g.a.dec(edx).unwrap();
    g.a.cmp(dword_ptr(g.ix(R::Bp, R::D, 4, arr)), eax).unwrap();
    g.a.ja(right).unwrap();
    g.a.cmp(ecx, edx).unwrap();
    g.a.jge(parted).unwrap();
    g.a.mov(ebx, dword_ptr(g.ix(R::Bp, R::C, 4, arr))).unwrap();
    g.a.xchg(dword_ptr(g.ix(R::Bp, R::D, 4, arr)), ebx).unwrap();
    g.a.mov(dword_ptr(g.ix(R::Bp, R::C, 4, arr)), ebx).unwrap();
    g.a.jmp(left).unwrap();
    g.set(&mut parted);
    // qsort(lo, j); qsort(j + 1, hi) (the second as a tail call)
    g.push(R::Di);
    g.push(R::D);
    g.a.mov(edi, edx).unwrap();
    g.a.call(qsort).unwrap();
    g.pop(R::Si);
    g.a.inc(esi).unwrap();
    g.pop(R::Di);
    g.a.jmp(qsort).unwrap();
    g.set(&mut done);
    g.a.ret().unwrap();

    g.set(&mut main);
    g.a.mov(ebp, base).unwrap();
    // fill with the LCG
    let mut fill = g.label();
    g.a.mov(esi, SORT_SEED).unwrap();
    g.a.xor(ecx, ecx).unwrap();
    g.set(&mut fill);
    g.a.imul_3(esi, esi, 1_103_515_245).unwrap();
    g.a.add(esi, 12345).unwrap();
    g.a.mov(dword_ptr(g.ix(R::Bp, R::C, 4, arr)), esi).unwrap();
    g.a.inc(ecx).unwrap();
    g.a.cmp(ecx, n as i32).unwrap();
    g.a.jb(fill).unwrap();
    g.a.xor(esi, esi).unwrap();
    g.a.mov(edi, n - 1).unwrap();
    g.a.call(qsort).unwrap();
    // inversions and checksum
    let (mut scan, mut ordered) = (g.label(), g.label());
    g.a.xor(ecx, ecx).unwrap();
    g.a.xor(edi, edi).unwrap();
    g.a.mov(ebx, 0x811c_9dc5u32).unwrap();
    g.set(&mut scan);
    g.a.mov(eax, dword_ptr(g.ix(R::Bp, R::C, 4, arr))).unwrap();
    g.a.xor(ebx, eax).unwrap();
    g.a.imul_3(ebx, ebx, 0x0100_0193).unwrap();
    g.a.inc(ecx).unwrap();
    g.a.cmp(ecx, n as i32).unwrap();
    g.a.jae(ordered).unwrap(); // no successor for the last element
    g.a.cmp(eax, dword_ptr(g.ix(R::Bp, R::C, 4, arr))).unwrap();
    g.a.jbe(scan).unwrap();
    g.a.inc(edi).unwrap();
    g.a.jmp(scan).unwrap();
    g.set(&mut ordered);
    g.a.mov(dword_ptr(g.at(R::Bp, v_inv)), edi).unwrap();
    g.a.mov(dword_ptr(g.at(R::Bp, v_h)), ebx).unwrap();
    g.print_str(&format!("sort n={n}"));
    g.print_var(" min=", g.at(R::Bp, arr));
    g.print_var(" max=", g.at(R::Bp, arr + 4 * (n as i32 - 1)));
    g.print_var(" inv=", g.at(R::Bp, v_inv));
    g.print_var(" h=", g.at(R::Bp, v_h));
    g.print_str("\n");
    g.exit();
    g.finish("sort", sort_expected(n))
}

// ---------------------------------------------------------------------------------------------
// crc32: CRC-32/IEEE, table-driven (the table computed bitwise), over an LCG buffer.

const CRC_SEED: u32 = 0xc0ff_ee11;

fn crc_len(bits: u32) -> u32 {
    if bits == 16 {
        16 << 10
    } else {
        2 << 20
    }
}

/// The buffer `crc32` checksums: LCG states stored as little-endian dwords.
fn crc_buffer(len: u32) -> Vec<u8> {
    let mut x = CRC_SEED;
    (0..len / 4)
        .flat_map(|_| {
            x = lcg_b(x);
            x.to_le_bytes()
        })
        .collect()
}

/// CRC-32/IEEE (reflected, polynomial 0xEDB88320), bit by bit.
pub fn crc32_ieee(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn crc32(bits: u32) -> Guest {
    let len = crc_len(bits);
    let mut g = G::new(bits);
    let base = data_base(bits);
    let v_crc = 0;
    let table = 0x10;
    let buf = 0x1000;
    g.a.mov(ebp, base).unwrap();
    // table[n] for n in 0..256, bitwise
    let (mut tg, mut bit, mut nox) = (g.label(), g.label(), g.label());
    g.a.xor(ebx, ebx).unwrap();
    g.set(&mut tg);
    g.a.mov(eax, ebx).unwrap();
    g.a.mov(ecx, 8).unwrap();
    g.set(&mut bit);
    g.a.shr(eax, 1).unwrap();
    g.a.jnc(nox).unwrap();
    g.a.xor(eax, 0xedb8_8320u32 as i32).unwrap();
    g.set(&mut nox);
    g.a.dec(ecx).unwrap();
    g.a.jnz(bit).unwrap();
    g.a.mov(dword_ptr(g.ix(R::Bp, R::B, 4, table)), eax)
        .unwrap();
    g.a.inc(ebx).unwrap();
    g.a.cmp(ebx, 256).unwrap();
    g.a.jb(tg).unwrap();
    // the buffer
    let mut bg = g.label();
    g.a.mov(esi, CRC_SEED).unwrap();
    g.a.xor(ecx, ecx).unwrap();
    g.set(&mut bg);
    g.a.imul_3(esi, esi, 1_664_525).unwrap();
    g.a.add(esi, 1_013_904_223).unwrap();
    g.a.mov(dword_ptr(g.ix(R::Bp, R::C, 4, buf)), esi).unwrap();
    g.a.inc(ecx).unwrap();
    g.a.cmp(ecx, (len / 4) as i32).unwrap();
    g.a.jb(bg).unwrap();
    // crc = table[(crc ^ b) & 0xff] ^ (crc >> 8)
    let mut crc_loop = g.label();
    g.a.mov(eax, -1).unwrap();
    g.a.xor(ecx, ecx).unwrap();
    g.set(&mut crc_loop);
    g.a.movzx(edx, byte_ptr(g.ix(R::Bp, R::C, 1, buf))).unwrap();
    g.a.xor(edx, eax).unwrap();
    g.a.movzx(edx, dl).unwrap();
    g.a.shr(eax, 8).unwrap();
    g.a.xor(eax, dword_ptr(g.ix(R::Bp, R::D, 4, table)))
        .unwrap();
    g.a.inc(ecx).unwrap();
    g.a.cmp(ecx, len as i32).unwrap();
    g.a.jb(crc_loop).unwrap();
    g.a.not(eax).unwrap();
    g.a.mov(dword_ptr(g.at(R::Bp, v_crc)), eax).unwrap();
    g.print_var("crc32=", g.at(R::Bp, v_crc));
    g.print_str("\n");
    g.exit();
    let want = crc32_ieee(&crc_buffer(len));
    g.finish("crc32", format!("crc32={want:08x}\n"))
}

// ---------------------------------------------------------------------------------------------
// strings: generated text split at NULs; strlen (REPNE SCASB), compare with the previous
// string (REPE CMPSB), concatenate (REP MOVSB), copy by dwords (REP MOVSD), checksum (LODSB).

const STR_SEED: u32 = 0x5eed_1e55;
const STR_LEN: u32 = 64 << 10;
const STR_FILL: u8 = 0x2e;

/// The generated text: letters, spaces and NULs, NUL-terminated.
fn str_text() -> Vec<u8> {
    let mut x = STR_SEED;
    let mut t: Vec<u8> = (0..STR_LEN)
        .map(|_| {
            x = lcg_a(x);
            match x >> 27 {
                c @ 0..=25 => b'a' + c as u8,
                26..=29 => b' ',
                _ => 0,
            }
        })
        .collect();
    *t.last_mut().unwrap() = 0;
    t
}

/// The native model of `strings`.
fn strings_expected() -> String {
    let t = str_text();
    let (mut p, mut prev, mut prevlen) = (0usize, 0usize, 0usize);
    let (mut h, mut nstr) = (0u32, 0u32);
    let mut dst = vec![STR_FILL; STR_LEN as usize];
    let mut total = 0usize;
    while p < t.len() {
        let len = t[p..].iter().position(|&b| b == 0).unwrap();
        let n = len.min(prevlen);
        // REPE CMPSB after `test ecx, ecx`: the remaining count and ZF
        let (rest, zf) = match (0..n).find(|&k| t[p + k] != t[prev + k]) {
            _ if n == 0 => (0, 1),
            Some(k) => (n - k - 1, 0),
            None => (0, 1),
        };
        h = h.wrapping_mul(33) ^ len as u32;
        h = h.wrapping_mul(33) ^ rest as u32;
        h = h.wrapping_mul(33) ^ zf;
        dst[total..total + len].copy_from_slice(&t[p..p + len]);
        total += len;
        prev = p;
        prevlen = len;
        p += len + 1;
        nstr += 1;
    }
    let ndw = total.div_ceil(4);
    let s = dst[..4 * ndw]
        .iter()
        .fold(0u32, |s, &b| s.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("strings n={nstr:08x} len={total:08x} h={h:08x} s={s:08x}\n")
}

fn strings(bits: u32) -> Guest {
    assert!(bits != 16, "strings needs 32-bit addressing");
    let mut g = G::new(bits);
    let base = data_base(bits);
    // variables at ebp + ...
    let (v_p, v_dp, v_prev, v_prevlen, v_h, v_nstr, v_len, v_total, v_ndw) =
        (0, 4, 8, 12, 16, 20, 24, 28, 32);
    let txt = base + 0x1000;
    let dst = txt + STR_LEN + 0x1000;
    let cpy = dst + STR_LEN + 0x1000;
    let var = |g: &G, off: i32| dword_ptr(g.at(R::Bp, off));
    g.a.mov(ebp, base).unwrap();
    g.a.cld().unwrap();
    // generate the text with STOSB
    let (mut gen, mut space, mut letter, mut store) = (g.label(), g.label(), g.label(), g.label());
    g.a.mov(esi, STR_SEED).unwrap();
    g.a.mov(edi, txt).unwrap();
    g.a.mov(ecx, STR_LEN).unwrap();
    g.set(&mut gen);
    g.a.imul_3(esi, esi, 1_103_515_245).unwrap();
    g.a.add(esi, 12345).unwrap();
    g.a.mov(eax, esi).unwrap();
    g.a.shr(eax, 27).unwrap();
    g.a.cmp(eax, 26).unwrap();
    g.a.jb(letter).unwrap();
    g.a.cmp(eax, 30).unwrap();
    g.a.jb(space).unwrap();
    g.a.xor(eax, eax).unwrap();
    g.a.jmp(store).unwrap();
    g.set(&mut space);
    g.a.mov(eax, b' ' as u32).unwrap();
    g.a.jmp(store).unwrap();
    g.set(&mut letter);
    g.a.add(eax, b'a' as i32).unwrap();
    g.set(&mut store);
    g.a.stosb().unwrap();
    g.a.dec(ecx).unwrap();
    g.a.jnz(gen).unwrap();
    g.a.mov(byte_ptr(g.at(R::Di, -1)), 0).unwrap();
    // fill the destination with REP STOSB
    g.a.mov(edi, dst).unwrap();
    g.a.mov(ecx, STR_LEN).unwrap();
    g.a.mov(al, STR_FILL as u32).unwrap();
    g.a.rep().stosb().unwrap();
    // state
    g.a.mov(var(&g, v_p), txt).unwrap();
    g.a.mov(var(&g, v_dp), dst).unwrap();
    g.a.mov(var(&g, v_prev), txt).unwrap();
    g.a.mov(var(&g, v_prevlen), 0).unwrap();
    g.a.mov(var(&g, v_h), 0).unwrap();
    g.a.mov(var(&g, v_nstr), 0).unwrap();
    let (mut top, mut done) = (g.label(), g.label());
    g.set(&mut top);
    g.a.mov(eax, var(&g, v_p)).unwrap();
    g.a.cmp(eax, (txt + STR_LEN) as i32).unwrap();
    g.a.jae(done).unwrap();
    // strlen
    g.a.mov(edi, eax).unwrap();
    g.a.xor(eax, eax).unwrap();
    g.a.mov(ecx, -1).unwrap();
    g.a.repne().scasb().unwrap();
    g.a.not(ecx).unwrap();
    g.a.dec(ecx).unwrap();
    g.a.mov(var(&g, v_len), ecx).unwrap();
    // compare min(len, prevlen) bytes with the previous string
    g.a.mov(edx, var(&g, v_prevlen)).unwrap();
    g.a.cmp(ecx, edx).unwrap();
    g.a.cmovb(edx, ecx).unwrap();
    g.a.mov(ecx, edx).unwrap();
    g.a.mov(esi, var(&g, v_p)).unwrap();
    g.a.mov(edi, var(&g, v_prev)).unwrap();
    g.a.test(ecx, ecx).unwrap();
    g.a.repe().cmpsb().unwrap();
    g.a.sete(al).unwrap();
    g.a.movzx(eax, al).unwrap();
    g.a.mov(ebx, var(&g, v_h)).unwrap();
    g.a.imul_3(ebx, ebx, 33).unwrap();
    g.a.xor(ebx, var(&g, v_len)).unwrap();
    g.a.imul_3(ebx, ebx, 33).unwrap();
    g.a.xor(ebx, ecx).unwrap();
    g.a.imul_3(ebx, ebx, 33).unwrap();
    g.a.xor(ebx, eax).unwrap();
    g.a.mov(var(&g, v_h), ebx).unwrap();
    // append to the destination
    g.a.mov(esi, var(&g, v_p)).unwrap();
    g.a.mov(edi, var(&g, v_dp)).unwrap();
    g.a.mov(ecx, var(&g, v_len)).unwrap();
    g.a.rep().movsb().unwrap();
    g.a.mov(var(&g, v_dp), edi).unwrap();
    // next string
    g.a.mov(eax, var(&g, v_p)).unwrap();
    g.a.mov(var(&g, v_prev), eax).unwrap();
    g.a.mov(ecx, var(&g, v_len)).unwrap();
    g.a.mov(var(&g, v_prevlen), ecx).unwrap();
    g.a.lea(eax, g.ix(R::A, R::C, 1, 1)).unwrap();
    g.a.mov(var(&g, v_p), eax).unwrap();
    g.a.inc(var(&g, v_nstr)).unwrap();
    g.a.jmp(top).unwrap();
    g.set(&mut done);
    // copy the concatenation by dwords with REP MOVSD
    g.a.mov(ecx, var(&g, v_dp)).unwrap();
    g.a.sub(ecx, dst as i32).unwrap();
    g.a.mov(var(&g, v_total), ecx).unwrap();
    g.a.add(ecx, 3).unwrap();
    g.a.shr(ecx, 2).unwrap();
    g.a.mov(var(&g, v_ndw), ecx).unwrap();
    g.a.mov(esi, dst).unwrap();
    g.a.mov(edi, cpy).unwrap();
    g.a.rep().movsd().unwrap();
    // checksum the copy with LODSB
    let mut ls = g.label();
    g.a.mov(ecx, var(&g, v_ndw)).unwrap();
    g.a.shl(ecx, 2).unwrap();
    g.a.mov(esi, cpy).unwrap();
    g.a.xor(ebx, ebx).unwrap();
    g.set(&mut ls);
    g.a.lodsb().unwrap();
    g.a.movzx(eax, al).unwrap();
    g.a.imul_3(ebx, ebx, 31).unwrap();
    g.a.add(ebx, eax).unwrap();
    g.a.dec(ecx).unwrap();
    g.a.jnz(ls).unwrap();
    g.a.mov(var(&g, v_len), ebx).unwrap();
    g.print_var("strings n=", g.at(R::Bp, v_nstr));
    g.print_var(" len=", g.at(R::Bp, v_total));
    g.print_var(" h=", g.at(R::Bp, v_h));
    g.print_var(" s=", g.at(R::Bp, v_len));
    g.print_str("\n");
    g.exit();
    g.finish("strings", strings_expected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_guest_assembles_and_has_output() {
        let all = all();
        assert_eq!(all.len(), 11);
        for g in &all {
            assert!(!g.image.is_empty(), "{} {}", g.name, g.bitness);
            assert!(g.expected_output.ends_with('\n'));
            assert!(g.expected_output.starts_with(g.name));
        }
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32_ieee(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn sieve_counts_primes() {
        assert!(sieve_expected(100).starts_with("sieve n=100 count=00000019 sum=00000424"));
    }
}
