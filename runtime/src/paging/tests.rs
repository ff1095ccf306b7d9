use super::*;
use crate::state::{CR4_PKE, CR4_PKS, EFER_LME};
use pte::{A, D, G, P, PS, RW, US, XD};

mod rights;

const RAM: u64 = 4 << 20;
/// Where the builder starts allocating tables.
const TABLES: u64 = 0x10_0000;

/// Builds paging structures in a fresh RAM.
struct Tb {
    mem: PhysMem,
    next: u64,
}

impl Tb {
    fn new() -> Tb {
        Tb {
            mem: PhysMem::new(RAM).unwrap(),
            next: TABLES,
        }
    }

    fn table(&mut self) -> u64 {
        let t = self.next;
        self.next += 0x1000;
        t
    }

    fn w(&mut self, addr: u64, size: u32, v: u64) {
        self.mem.write_phys(addr, size, v);
    }

    fn r(&self, addr: u64, size: u32) -> u64 {
        self.mem.peek_phys(addr, size)
    }

    /// Maps `lin` with a leaf at `leaf_shift` (12, 21, 22 or 30) holding `leaf` (address and
    /// flags), every intermediate entry holding `upper` flags. Tables are allocated afresh
    /// from [`TABLES`] (overwriting the previous build). Returns CR3 and the addresses of the
    /// entries used, top first (the PAE PDPTE included).
    fn build(
        &mut self,
        mode: PagingMode,
        lin: u64,
        leaf_shift: u32,
        upper: u64,
        leaf: u64,
    ) -> (u64, Vec<u64>) {
        self.next = TABLES;
        let mut used = Vec::new();
        match mode {
            PagingMode::Off => (0, used),
            PagingMode::Bits32 => {
                let pd = self.table();
                let pde = pd + ((lin >> 22) & 0x3ff) * 4;
                used.push(pde);
                if leaf_shift == 22 {
                    self.w(pde, 4, leaf);
                } else {
                    let pt = self.table();
                    self.w(pde, 4, pt | upper);
                    let e = pt + ((lin >> 12) & 0x3ff) * 4;
                    self.w(e, 4, leaf);
                    used.push(e);
                }
                (pd, used)
            }
            PagingMode::Pae | PagingMode::Level4 => {
                let (cr3, mut table, shifts): (u64, u64, &[u32]) = if mode == PagingMode::Pae {
                    let pdpt = self.table();
                    let pd = self.table();
                    let e = pdpt + ((lin >> 30) & 3) * 8;
                    self.w(e, 8, pd | P);
                    used.push(e);
                    (pdpt, pd, &[21, 12])
                } else {
                    let t = self.table();
                    (t, t, &[39, 30, 21, 12])
                };
                for &s in shifts {
                    let e = table + ((lin >> s) & 0x1ff) * 8;
                    used.push(e);
                    if s == leaf_shift {
                        self.w(e, 8, leaf);
                        break;
                    }
                    let t = self.table();
                    self.w(e, 8, t | upper);
                    table = t;
                }
                (cr3, used)
            }
        }
    }

    fn go(&mut self, regs: &WalkRegs, lin: u64, access: Access) -> Result<Translation, Fault> {
        walk(&mut self.mem, regs, lin, access, false, false, false)
    }

    fn go_user(&mut self, regs: &WalkRegs, lin: u64, access: Access) -> Result<Translation, Fault> {
        walk(&mut self.mem, regs, lin, access, true, false, false)
    }
}

/// Registers for `mode` with paging on; 32-bit paging gets CR4.PSE.
fn regs(mode: PagingMode, cr3: u64) -> WalkRegs {
    let pg = CR0_PG | 1;
    match mode {
        PagingMode::Off => WalkRegs {
            cr0: 1,
            cr3,
            ..Default::default()
        },
        PagingMode::Bits32 => WalkRegs {
            cr0: pg,
            cr3,
            cr4: CR4_PSE,
            efer: 0,
            ..Default::default()
        },
        PagingMode::Pae => WalkRegs {
            cr0: pg,
            cr3,
            cr4: CR4_PAE,
            efer: 0,
            ..Default::default()
        },
        PagingMode::Level4 => WalkRegs {
            cr0: pg,
            cr3,
            cr4: CR4_PAE,
            efer: EFER_LME | EFER_LMA,
            ..Default::default()
        },
    }
}

fn pf(code: u32) -> Result<Translation, Fault> {
    Err(Fault::with_code(Exception::PageFault, code))
}

fn code(r: Result<Translation, Fault>) -> u32 {
    let f = r.expect_err("expected a page fault");
    assert_eq!(f.exception, Exception::PageFault);
    f.error_code
}

const MODES: [PagingMode; 3] = [PagingMode::Bits32, PagingMode::Pae, PagingMode::Level4];
const ALL: u64 = P | RW | US;

#[test]
fn mode_selection() {
    assert_eq!(regs(PagingMode::Off, 0).mode(), PagingMode::Off);
    for m in MODES {
        assert_eq!(regs(m, 0).mode(), m);
    }
    // PG clear wins over everything else.
    let r = WalkRegs {
        cr0: 1,
        cr3: 0x1000,
        cr4: CR4_PAE | CR4_PSE,
        efer: EFER_LMA | EFER_NXE,
        ..Default::default()
    };
    assert_eq!(r.mode(), PagingMode::Off);
    assert!(!r.nx_enabled());
    let mut r = regs(PagingMode::Bits32, 0);
    r.efer |= EFER_NXE;
    assert!(!r.nx_enabled(), "no XD bit under 32-bit paging");
}

#[test]
fn from_cpu_copies_registers() {
    let mut cpu = CpuState::new(crate::CpuMode::Long64);
    cpu.cr3 = 0x5000;
    let r = WalkRegs::from_cpu(&cpu);
    assert_eq!(
        (r.cr0, r.cr3, r.cr4, r.efer),
        (cpu.cr0, 0x5000, cpu.cr4, cpu.efer)
    );
}

#[test]
fn paging_off_is_identity() {
    let mut tb = Tb::new();
    // Garbage where tables would be must not matter.
    tb.mem.ram_mut().fill(0xff);
    let r = WalkRegs {
        cr0: 1,
        cr3: 0,
        cr4: CR4_PAE | CR4_SMEP | CR4_SMAP,
        efer: EFER_LMA | EFER_NXE,
        ..Default::default()
    };
    for lin in [0, 0x1234, 0xffff_ffff, 0x1_0000_0000, u64::MAX] {
        for acc in [Access::Read, Access::Write, Access::Execute] {
            let t = walk(&mut tb.mem, &r, lin, acc, true, false, false).unwrap();
            assert_eq!(t.phys, lin);
            assert_eq!(t.page_size, 4096);
            assert!(t.writable && t.user && t.executable && t.dirty && !t.global);
        }
    }
    assert!(tb.mem.ram().iter().all(|&b| b == 0xff), "nothing written");
}

#[test]
fn bits32_4k_translation_and_ad() {
    let mut tb = Tb::new();
    let lin = 0x8040_1abc;
    let (cr3, used) = tb.build(PagingMode::Bits32, lin, 12, ALL, 0x0023_4000 | ALL);
    let r = regs(PagingMode::Bits32, cr3);
    let t = tb.go(&r, lin, Access::Read).unwrap();
    assert_eq!(t.phys, 0x0023_4abc);
    assert_eq!(t.page_size, 4096);
    assert!(t.writable && t.user && t.executable && !t.dirty);
    // A in both, D nowhere after a read.
    assert_eq!(tb.r(used[0], 4) & (A | D), A);
    assert_eq!(tb.r(used[1], 4) & (A | D), A);
    let t = tb.go(&r, lin, Access::Write).unwrap();
    assert!(t.dirty);
    assert_eq!(tb.r(used[0], 4) & (A | D), A, "no D in a PDE");
    assert_eq!(tb.r(used[1], 4) & (A | D), A | D);
    // The address bits survive the update.
    assert_eq!(tb.r(used[1], 4), 0x0023_4000 | ALL | A | D);
    // Upper 32 bits of the linear address are ignored.
    assert_eq!(
        tb.go(&r, lin | 0xdead_0000_0000_0000, Access::Read)
            .unwrap()
            .phys,
        0x0023_4abc
    );
}

#[test]
fn bits32_4m_pages_and_pse36() {
    let mut tb = Tb::new();
    let lin = 0xc0ab_cdef;
    // Physical bits 39:32 = 0xa5 from PDE bits 20:13; PAT (bit 12) is not an address bit.
    let pde = 0xc000_0000 | (0xa5 << 13) | (1 << 12) | PS | ALL;
    let (cr3, used) = tb.build(PagingMode::Bits32, lin, 22, 0, pde);
    let r = regs(PagingMode::Bits32, cr3);
    let t = tb.go(&r, lin, Access::Write).unwrap();
    assert_eq!(t.phys, 0xa5_c02b_cdef);
    assert_eq!(t.page_size, 4 << 20);
    assert_eq!(tb.r(used[0], 4), pde | A | D);
    // Bit 21 is reserved with MAXPHYADDR = 40.
    tb.build(PagingMode::Bits32, lin, 22, 0, pde | 1 << 21);
    assert_eq!(code(tb.go(&r, lin, Access::Read)), pf::P | pf::RSVD);
    assert_eq!(
        code(tb.go_user(&r, lin, Access::Write)),
        pf::P | pf::RSVD | pf::W | pf::U
    );
    // Without CR4.PSE the PS bit is ignored: the PDE points to a page table.
    let (cr3, _) = tb.build(PagingMode::Bits32, lin, 22, 0, 0x0020_0000 | PS | ALL);
    tb.w(
        0x0020_0000 + ((lin >> 12) & 0x3ff) * 4,
        4,
        0x0030_0000 | ALL,
    );
    let mut r = regs(PagingMode::Bits32, cr3);
    r.cr4 &= !CR4_PSE;
    let t = tb.go(&r, lin, Access::Read).unwrap();
    assert_eq!((t.phys, t.page_size), (0x0030_0def, 4096));
}

#[test]
fn pae_translation() {
    let mut tb = Tb::new();
    let lin = 0xc020_3456;
    let (cr3, used) = tb.build(PagingMode::Pae, lin, 12, ALL, 0x12_3456_7000 | ALL);
    let r = regs(PagingMode::Pae, cr3);
    let t = tb.go(&r, lin, Access::Write).unwrap();
    assert_eq!((t.phys, t.page_size), (0x12_3456_7456, 4096));
    assert_eq!(
        tb.r(used[0], 8),
        (TABLES + 0x1000) | P,
        "no A in a PAE PDPTE"
    );
    assert_eq!(tb.r(used[1], 8) & (A | D), A);
    assert_eq!(tb.r(used[2], 8) & (A | D), A | D);
    // 2 MiB page; upper linear bits ignored.
    let (cr3, _) = tb.build(PagingMode::Pae, lin, 21, 0, 0xab_cde0_0000 | PS | ALL);
    let r = regs(PagingMode::Pae, cr3);
    let t = tb
        .go(&r, lin | 0xffff_ffff_0000_0000, Access::Read)
        .unwrap();
    assert_eq!((t.phys, t.page_size), (0xab_cde0_3456, 2 << 20));
    // CR3 only needs 32-byte alignment: the PDPT can sit inside a page.
    let (cr3, used) = tb.build(PagingMode::Pae, lin, 12, ALL, 0x7000 | ALL);
    let pdpte = tb.r(used[0], 8);
    tb.w(used[0], 8, 0);
    tb.w(cr3 + 0x60 + 3 * 8, 8, pdpte);
    let r = regs(PagingMode::Pae, cr3 + 0x60);
    assert_eq!(tb.go(&r, lin, Access::Read).unwrap().phys, 0x7456);
}

#[test]
fn level4_translation_all_sizes() {
    let mut tb = Tb::new();
    let lin = 0x0000_7f12_3456_789a;
    for (shift, frame) in [
        (12, 0xff_ffff_f000u64),
        (21, 0x80_0020_0000),
        (30, 0x40_4000_0000),
    ] {
        let size = 1u64 << shift;
        let leaf = frame | ALL | if shift > 12 { PS } else { 0 };
        let (cr3, used) = tb.build(PagingMode::Level4, lin, shift, ALL, leaf);
        let r = regs(PagingMode::Level4, cr3);
        let t = tb.go(&r, lin, Access::Read).unwrap();
        assert_eq!(t.phys, frame | (lin & (size - 1)), "shift {shift}");
        assert_eq!(t.page_size, size);
        for &e in &used {
            assert_eq!(tb.r(e, 8) & (A | D), A);
        }
        tb.go(&r, lin, Access::Write).unwrap();
        let (last, upper) = used.split_last().unwrap();
        assert_eq!(tb.r(*last, 8), leaf | A | D);
        for &e in upper {
            assert_eq!(tb.r(e, 8) & (A | D), A, "D only in the leaf");
        }
        // The walker ignores bits 63:48; canonical checks are the caller's.
        assert_eq!(
            tb.go(&r, lin | 0xabcd << 48, Access::Read).unwrap().phys,
            t.phys
        );
    }
    // The PAT bit of a 4 KiB PTE is not PS.
    let (cr3, _) = tb.build(PagingMode::Level4, lin, 12, ALL, 0x5000 | PS | ALL);
    let t = tb
        .go(&regs(PagingMode::Level4, cr3), lin, Access::Read)
        .unwrap();
    assert_eq!((t.phys, t.page_size), (0x5000 | 0x89a, 4096));
}

#[test]
fn ignored_bits_in_level4_are_kept_and_not_reserved() {
    let mut tb = Tb::new();
    let lin = 0x1234_5000;
    let ign = bits(62, 52) | bits(11, 9);
    let (cr3, used) = tb.build(PagingMode::Level4, lin, 12, ALL | ign, 0x9000 | ALL | ign);
    let r = regs(PagingMode::Level4, cr3);
    assert_eq!(tb.go(&r, lin, Access::Write).unwrap().phys, 0x9000);
    assert_eq!(tb.r(used[3], 8), 0x9000 | ALL | ign | A | D);
    // The same bits are reserved under PAE (62:52 lie in 62:MAXPHYADDR).
    let (cr3, _) = tb.build(PagingMode::Pae, lin, 12, ALL, 0x9000 | ALL | 1 << 52);
    assert_eq!(
        code(tb.go(&regs(PagingMode::Pae, cr3), lin, Access::Read)),
        pf::P | pf::RSVD
    );
}

#[test]
fn not_present_at_each_level() {
    let mut tb = Tb::new();
    let lin = 0x4_0060_1000;
    for mode in MODES {
        let levels = tb.build(mode, lin, 12, ALL, 0x7000 | ALL).1.len();
        for level in 0..levels {
            for (acc, user, want) in [
                (Access::Read, false, 0),
                (Access::Write, false, pf::W),
                (Access::Read, true, pf::U),
                (Access::Write, true, pf::W | pf::U),
                (Access::Execute, true, pf::U),
            ] {
                let (cr3, used) = tb.build(mode, lin, 12, ALL, 0x7000 | ALL);
                // Every other bit set: a not-present entry's other bits are ignored.
                let v = if mode == PagingMode::Bits32 {
                    0xffff_fffe
                } else {
                    !P
                };
                tb.w(
                    used[level],
                    if mode == PagingMode::Bits32 { 4 } else { 8 },
                    v,
                );
                let snapshot: Vec<u64> = used.iter().map(|&e| tb.r(e, 8)).collect();
                let r = regs(mode, cr3);
                let got = walk(&mut tb.mem, &r, lin, acc, user, false, false);
                assert_eq!(got, pf(want), "{mode:?} level {level} {acc:?} user {user}");
                let after: Vec<u64> = used.iter().map(|&e| tb.r(e, 8)).collect();
                assert_eq!(snapshot, after, "no A bits on a fault");
            }
        }
    }
}

#[test]
fn instruction_fetch_error_code_bit() {
    let mut tb = Tb::new();
    let lin = 0x40_0000;
    for mode in MODES {
        for nxe in [false, true] {
            for smep in [false, true] {
                let (cr3, used) = tb.build(mode, lin, 12, ALL, 0x7000 | ALL);
                tb.w(*used.last().unwrap(), 4, 0);
                let mut r = regs(mode, cr3);
                if nxe {
                    r.efer |= EFER_NXE;
                }
                if smep {
                    r.cr4 |= CR4_SMEP;
                }
                let id = smep || (nxe && mode != PagingMode::Bits32);
                let want = if id { pf::ID } else { 0 };
                assert_eq!(
                    code(tb.go(&r, lin, Access::Execute)),
                    want,
                    "{mode:?} {nxe} {smep}"
                );
                assert_eq!(code(tb.go_user(&r, lin, Access::Execute)), want | pf::U);
                assert_eq!(code(tb.go(&r, lin, Access::Read)), 0, "I/D only on fetches");
            }
        }
    }
}

#[test]
fn global_bit() {
    let mut tb = Tb::new();
    let lin = 0x60_0000;
    for mode in MODES {
        // G in an upper level means nothing.
        let (cr3, _) = tb.build(mode, lin, 12, ALL | G, 0x7000 | ALL);
        let mut r = regs(mode, cr3);
        r.cr4 |= CR4_PGE;
        assert!(!tb.go(&r, lin, Access::Read).unwrap().global);
        tb.build(mode, lin, 12, ALL, 0x7000 | ALL | G);
        assert!(tb.go(&r, lin, Access::Read).unwrap().global);
        r.cr4 &= !CR4_PGE;
        assert!(
            !tb.go(&r, lin, Access::Read).unwrap().global,
            "needs CR4.PGE"
        );
    }
}

#[test]
fn reserved_bits() {
    let mut tb = Tb::new();
    let lin = 0x7f_c060_3000;
    let rsvd = pf::P | pf::RSVD;
    // (mode, leaf shift, level to corrupt, bit, reserved?)
    let cases: &[(PagingMode, u32, usize, u32, bool)] = &[
        // 4-level: physical bits 51:40 reserved at every level, 62:52 ignored.
        (PagingMode::Level4, 12, 0, 40, true),
        (PagingMode::Level4, 12, 1, 51, true),
        (PagingMode::Level4, 12, 2, 45, true),
        (PagingMode::Level4, 12, 3, 40, true),
        (PagingMode::Level4, 12, 3, 39, false),
        (PagingMode::Level4, 12, 0, 52, false),
        (PagingMode::Level4, 12, 3, 62, false),
        // PS in a PML4E is reserved.
        (PagingMode::Level4, 12, 0, 7, true),
        // 1 GiB page: bits 29:13 reserved, 12 is PAT.
        (PagingMode::Level4, 30, 1, 13, true),
        (PagingMode::Level4, 30, 1, 29, true),
        (PagingMode::Level4, 30, 1, 12, false),
        (PagingMode::Level4, 30, 1, 30, false),
        // 2 MiB page: bits 20:13 reserved.
        (PagingMode::Level4, 21, 2, 13, true),
        (PagingMode::Level4, 21, 2, 20, true),
        (PagingMode::Level4, 21, 2, 12, false),
        (PagingMode::Level4, 21, 2, 21, false),
        // PAE PDPTE: 2:1, 8:5, 63:40.
        (PagingMode::Pae, 12, 0, 1, true),
        (PagingMode::Pae, 12, 0, 2, true),
        (PagingMode::Pae, 12, 0, 5, true),
        (PagingMode::Pae, 12, 0, 6, true),
        (PagingMode::Pae, 12, 0, 7, true),
        (PagingMode::Pae, 12, 0, 8, true),
        (PagingMode::Pae, 12, 0, 40, true),
        (PagingMode::Pae, 12, 0, 63, true),
        (PagingMode::Pae, 12, 0, 3, false),
        (PagingMode::Pae, 12, 0, 4, false),
        (PagingMode::Pae, 12, 0, 9, false),
        // PAE PDE/PTE: 62:40.
        (PagingMode::Pae, 12, 1, 62, true),
        (PagingMode::Pae, 12, 2, 40, true),
        (PagingMode::Pae, 12, 2, 55, true),
        (PagingMode::Pae, 21, 1, 13, true),
        (PagingMode::Pae, 21, 1, 20, true),
        (PagingMode::Pae, 21, 1, 12, false),
        // 32-bit: only bit 21 of a 4 MiB PDE.
        (PagingMode::Bits32, 22, 0, 21, true),
        (PagingMode::Bits32, 22, 0, 13, false),
        (PagingMode::Bits32, 12, 0, 8, false),
        (PagingMode::Bits32, 12, 1, 21, false),
    ];
    for &(mode, shift, level, bit, reserved) in cases {
        let leaf = if shift == 12 {
            0x40_0000 | ALL
        } else {
            0x4000_0000 | PS | ALL
        };
        let (cr3, used) = tb.build(mode, lin, shift, ALL, leaf);
        let size = if mode == PagingMode::Bits32 { 4 } else { 8 };
        let v = tb.r(used[level], size);
        tb.w(used[level], size, v | 1 << bit);
        let snapshot: Vec<u64> = used.iter().map(|&e| tb.r(e, 8)).collect();
        let r = regs(mode, cr3);
        let got = tb.go(&r, lin, Access::Read);
        let what = format!("{mode:?} shift {shift} level {level} bit {bit}");
        if reserved {
            assert_eq!(got, pf(rsvd), "{what}");
            let after: Vec<u64> = used.iter().map(|&e| tb.r(e, 8)).collect();
            assert_eq!(snapshot, after, "{what}");
            assert_eq!(
                code(tb.go_user(&r, lin, Access::Write)),
                rsvd | pf::W | pf::U
            );
        } else {
            assert!(got.is_ok(), "{what}: {got:?}");
        }
    }
}

#[test]
fn reserved_bit_beats_a_lower_not_present_entry() {
    // The walk stops at the first bad entry, top-down.
    let mut tb = Tb::new();
    let lin = 0x60_0000;
    let (cr3, used) = tb.build(PagingMode::Level4, lin, 12, ALL, 0);
    tb.w(used[1], 8, tb.r(used[1], 8) | 1 << 45);
    assert_eq!(
        code(tb.go(&regs(PagingMode::Level4, cr3), lin, Access::Read)),
        0x09
    );
    // ... and a not-present upper entry hides reserved bits below it.
    let (cr3, used) = tb.build(PagingMode::Level4, lin, 12, ALL, 0x7000 | ALL | 1 << 45);
    tb.w(used[2], 8, tb.r(used[2], 8) & !P);
    assert_eq!(
        code(tb.go(&regs(PagingMode::Level4, cr3), lin, Access::Read)),
        0
    );
}

#[test]
fn tables_outside_ram_read_as_floating_bus() {
    let mut tb = Tb::new();
    let lin = 0x1234_5678;
    let beyond = 0x8000_0000;
    for mode in [PagingMode::Pae, PagingMode::Level4] {
        let r = regs(mode, beyond);
        assert_eq!(
            code(tb.go(&r, lin, Access::Read)),
            pf::P | pf::RSVD,
            "{mode:?}"
        );
    }
    // 32-bit with PSE: PS and reserved bit 21 set.
    let r = regs(PagingMode::Bits32, beyond);
    assert_eq!(code(tb.go(&r, lin, Access::Read)), pf::P | pf::RSVD);
    // 32-bit without PSE: a valid mapping of the page at 0xffff_f000.
    let mut r = r;
    r.cr4 &= !CR4_PSE;
    let t = tb.go_user(&r, lin, Access::Write).unwrap();
    assert_eq!((t.phys, t.page_size), (0xffff_f678, 4096));
    assert!(t.writable && t.user && t.dirty);
    // A page table outside RAM behind a PDE in RAM.
    let (cr3, used) = tb.build(PagingMode::Level4, lin, 12, ALL, 0);
    tb.w(used[2], 8, beyond | ALL);
    let r = regs(PagingMode::Level4, cr3);
    assert_eq!(code(tb.go(&r, lin, Access::Read)), pf::P | pf::RSVD);
}

/// xorshift64*, for the fuzz test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn random_walks_never_panic() {
    let mut mem = PhysMem::new(1 << 20).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for chunk in mem.ram_mut().chunks_mut(8) {
        let v = rng.next();
        // Bias towards plausible entries: often present, addresses inside RAM.
        let v = match v % 4 {
            0 => v,
            1 => (v & 0xf_f000) | (v >> 52) | P,
            2 => (v & 0xf_f000) | (v >> 52) | P | (v & (XD | PS)),
            _ => v & !P,
        };
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    let interesting = [0, CR0_PG | CR0_WP | 1, u64::MAX];
    let mut faults = 0;
    for _ in 0..200_000 {
        let x = rng.next();
        let regs = WalkRegs {
            cr0: interesting[(x % 3) as usize] | (rng.next() & (CR0_PG | CR0_WP)),
            cr3: if x & 8 != 0 {
                rng.next()
            } else {
                rng.next() & 0xf_ffe0
            },
            cr4: rng.next(),
            efer: rng.next(),
            pkru: rng.next() as u32,
            pkrs: rng.next() as u32,
        };
        let linear = if x & 16 != 0 {
            rng.next()
        } else {
            rng.next() & 0xf_ffff
        };
        let access = [Access::Read, Access::Write, Access::Execute][((x >> 8) % 3) as usize];
        match walk(
            &mut mem,
            &regs,
            linear,
            access,
            x & 32 != 0,
            x & 64 != 0,
            x & 128 != 0,
        ) {
            Ok(t) => {
                assert!([1 << 12, 1 << 21, 1 << 22, 1 << 30].contains(&t.page_size));
                if regs.mode() != PagingMode::Off {
                    assert!(t.phys < 1 << MAXPHYADDR);
                    assert_eq!(t.phys & (t.page_size - 1), linear & (t.page_size - 1));
                }
            }
            Err(f) => {
                faults += 1;
                assert_eq!(f.exception, Exception::PageFault);
                assert_eq!(f.error_code & !0x3f, 0);
                assert!(f.error_code & pf::RSVD == 0 || f.error_code & pf::P != 0);
            }
        }
    }
    assert!(faults > 0);
}

#[test]
fn recursive_self_map() {
    // One entry used at several levels (a self-referencing table, as Windows and many
    // kernels use): the A/D updates must not undo each other.
    let mut tb = Tb::new();
    let pml4 = TABLES;
    tb.w(pml4 + 511 * 8, 8, pml4 | ALL);
    let r = regs(PagingMode::Level4, pml4);
    let lin = 0xffff_ffff_ffff_f008;
    let t = tb.go(&r, lin, Access::Write).unwrap();
    assert_eq!((t.phys, t.page_size), (pml4 + 8, 4096));
    assert_eq!(tb.r(pml4 + 511 * 8, 8), pml4 | ALL | A | D);
    // The same under 32-bit paging: PD[1023] maps the page directory itself.
    let pd = TABLES + 0x1000;
    tb.w(pd + 1023 * 4, 4, pd | ALL);
    let r = regs(PagingMode::Bits32, pd);
    let t = tb.go(&r, 0xffff_f004, Access::Write).unwrap();
    assert_eq!(t.phys, pd + 4);
    assert_eq!(tb.r(pd + 1023 * 4, 4), pd | ALL | A | D);
}

#[test]
fn cr3_flag_and_high_bits_are_not_address_bits() {
    let mut tb = Tb::new();
    let lin = 0x60_0000;
    for mode in MODES {
        let (cr3, _) = tb.build(mode, lin, 12, ALL, 0x7000 | ALL);
        // PWT and PCD (bits 3 and 4) are not address bits in any mode; neither are bits
        // 63:32 outside long mode, nor bit 63 (PCID no-flush) in it.
        let noise = if mode == PagingMode::Level4 {
            1 << 63
        } else {
            0xabcd_0000_0000
        };
        let r = regs(mode, cr3 | 0x18 | noise);
        assert_eq!(
            tb.go(&r, lin, Access::Read).unwrap().phys,
            0x7000,
            "{mode:?}"
        );
    }
}

#[test]
fn read_of_a_present_dirty_page_keeps_d_and_reports_dirty() {
    let mut tb = Tb::new();
    let lin = 0x60_0000;
    let (cr3, used) = tb.build(PagingMode::Level4, lin, 12, ALL | A, 0x7000 | ALL | A | D);
    let before: Vec<u64> = used.iter().map(|&e| tb.r(e, 8)).collect();
    let t = tb
        .go(&regs(PagingMode::Level4, cr3), lin, Access::Read)
        .unwrap();
    assert!(t.dirty);
    let after: Vec<u64> = used.iter().map(|&e| tb.r(e, 8)).collect();
    assert_eq!(before, after);
}

#[test]
fn debug_translate_finds_every_mapping_without_setting_a_or_d_or_checking_rights() {
    for (mode, shift) in [
        (PagingMode::Bits32, 12),
        (PagingMode::Bits32, 22),
        (PagingMode::Pae, 21),
        (PagingMode::Level4, 12),
        (PagingMode::Level4, 30),
    ] {
        let mut tb = Tb::new();
        let lin = 0x4060_1234;
        let page = 0x20_0000 & !((1u64 << shift) - 1);
        // A supervisor read-only page, NX where the format has it: the debugger still sees it.
        let xd = if mode == PagingMode::Bits32 { 0 } else { XD };
        let leaf = page | P | if shift == 12 { 0 } else { PS } | xd;
        let (cr3, used) = tb.build(mode, lin, shift, P, leaf);
        let mut r = regs(mode, cr3);
        r.efer |= EFER_NXE;
        let before: Vec<u64> = used.iter().map(|&e| tb.r(e, 4)).collect();
        let want = page | (lin & ((1u64 << shift) - 1));
        assert_eq!(
            debug_translate(&mut tb.mem, &r, lin),
            Some(want),
            "{mode:?}"
        );
        let after: Vec<u64> = used.iter().map(|&e| tb.r(e, 4)).collect();
        assert_eq!(before, after, "{mode:?}: no A/D writes");
        // One page further along is not mapped (or, for large pages, maps the next page).
        if shift == 12 {
            assert_eq!(debug_translate(&mut tb.mem, &r, lin + 0x1000), None);
        }
    }
    let mut tb = Tb::new();
    assert_eq!(
        debug_translate(&mut tb.mem, &regs(PagingMode::Off, 0), 0x1234),
        Some(0x1234)
    );
}
