//! Access rights: U/S, R/W with CR0.WP, NX, SMEP, SMAP with EFLAGS.AC, implicit supervisor
//! accesses, the exact #PF error codes, and protection keys (PKU and PKS), each against the
//! SDM's rules spelled out case by case.

use super::*;

#[test]
fn implicit_supervisor_access_is_supervisor() {
    let mut tb = Tb::new();
    let lin = 0x40_0000;
    let (cr3, _) = tb.build(PagingMode::Level4, lin, 12, ALL, 0x7000 | P);
    let r = regs(PagingMode::Level4, cr3);
    // A user access to a supervisor page faults with U/S = 1 ...
    assert_eq!(code(tb.go_user(&r, lin, Access::Read)), pf::P | pf::U);
    // ... an implicit supervisor access at CPL 3 succeeds, and reports U/S = 0 when it faults.
    assert!(walk(&mut tb.mem, &r, lin, Access::Read, true, true, false).is_ok());
    let mut r = r;
    r.cr0 |= CR0_WP;
    let got = walk(&mut tb.mem, &r, lin, Access::Write, true, true, false);
    assert_eq!(got, pf(pf::P | pf::W));
}

/// Where an XD bit goes in the permission matrix.
#[derive(Clone, Copy, Debug, PartialEq)]
enum XdAt {
    None,
    Upper,
    Leaf,
}

/// The SDM's access-rights rules (4.6) written out case by case, as the test's oracle.
#[allow(clippy::too_many_arguments)]
fn expected_allowed(
    acc: Access,
    cpl3: bool,
    implicit: bool,
    us: bool,
    rw: bool,
    xd: bool,
    wp: bool,
    nxe: bool,
    smep: bool,
    smap: bool,
    ac: bool,
) -> bool {
    let supervisor_access = !cpl3 || implicit;
    let xd_blocks = nxe && xd;
    if !supervisor_access {
        // User-mode accesses: only user-mode addresses.
        return match acc {
            Access::Read => us,
            Access::Write => us && rw,
            Access::Execute => us && !xd_blocks,
        };
    }
    match (acc, us) {
        (Access::Read, false) => true,
        (Access::Read, true) => !smap || (ac && !implicit),
        (Access::Write, false) => !wp || rw,
        (Access::Write, true) => {
            if smap && (!ac || implicit) {
                false
            } else {
                !wp || rw
            }
        }
        (Access::Execute, false) => !xd_blocks,
        (Access::Execute, true) => !smep && !xd_blocks,
    }
}

#[test]
fn permission_matrix() {
    let mut tb = Tb::new();
    let lin = 0x7f_c060_3000;
    let mut checked = 0;
    for mode in MODES {
        let large_leaf = if mode == PagingMode::Bits32 { 22 } else { 21 };
        for combo in 0u32..1 << 13 {
            let bit = |i: u32| combo & (1 << i) != 0;
            let (us_u, us_l, rw_u, rw_l) = (bit(0), bit(1), bit(2), bit(3));
            let (wp, cpl3, implicit, nxe, smep, smap, ac) =
                (bit(4), bit(5), bit(6), bit(7), bit(8), bit(9), bit(10));
            let xd_at = match combo >> 11 {
                0 => XdAt::None,
                1 => XdAt::Upper,
                2 => XdAt::Leaf,
                _ => continue,
            };
            if mode == PagingMode::Bits32 && xd_at != XdAt::None {
                continue;
            }
            for large in [false, true] {
                for acc in [Access::Read, Access::Write, Access::Execute] {
                    let flag = |us: bool, rw: bool, xd: bool| {
                        P | if us { US } else { 0 }
                            | if rw { RW } else { 0 }
                            | if xd { XD } else { 0 }
                    };
                    let upper = flag(us_u, rw_u, xd_at == XdAt::Upper);
                    let mut leaf = flag(us_l, rw_l, xd_at == XdAt::Leaf);
                    let shift = if large {
                        leaf |= PS | 0x80_0000;
                        large_leaf
                    } else {
                        leaf |= 0x8000;
                        12
                    };
                    // Under 32-bit paging a 4 MiB PDE is the only level: the "upper" flags go
                    // unused, so fold them into the leaf for the oracle.
                    // The same for a PAE 2 MiB page: the PDPTE above it has no R/W, U/S, XD.
                    let single = large && mode != PagingMode::Level4;
                    let (cr3, used) = tb.build(mode, lin, shift, upper, leaf);
                    let mut r = regs(mode, cr3);
                    r.cr0 |= if wp { CR0_WP } else { 0 };
                    r.cr4 |= if smep { CR4_SMEP } else { 0 } | if smap { CR4_SMAP } else { 0 };
                    r.efer |= if nxe { EFER_NXE } else { 0 };
                    let snapshot: Vec<u64> = used.iter().map(|&e| tb.r(e, 8)).collect();
                    let got = walk(&mut tb.mem, &r, lin, acc, cpl3, implicit, ac);

                    let us = us_l && (single || us_u);
                    let rw = rw_l && (single || rw_u);
                    let xd = match xd_at {
                        XdAt::None => false,
                        XdAt::Upper => !single,
                        XdAt::Leaf => true,
                    };
                    let nx_on = nxe && mode != PagingMode::Bits32;
                    let mut want_code = 0;
                    if acc == Access::Write {
                        want_code |= pf::W;
                    }
                    if cpl3 && !implicit {
                        want_code |= pf::U;
                    }
                    if acc == Access::Execute && (smep || nx_on) {
                        want_code |= pf::ID;
                    }
                    let what = format!(
                        "{mode:?} large {large} {acc:?} us {us_u}/{us_l} rw {rw_u}/{rw_l} \
                         wp {wp} cpl3 {cpl3} implicit {implicit} nxe {nxe} smep {smep} \
                         smap {smap} ac {ac} xd {xd_at:?}"
                    );
                    let after: Vec<u64> = used.iter().map(|&e| tb.r(e, 8)).collect();
                    if xd && !nxe {
                        // XD without NXE is a reserved bit.
                        assert_eq!(got, pf(want_code | pf::P | pf::RSVD), "{what}");
                        assert_eq!(snapshot, after, "{what}");
                    } else if !expected_allowed(
                        acc, cpl3, implicit, us, rw, xd, wp, nx_on, smep, smap, ac,
                    ) {
                        assert_eq!(got, pf(want_code | pf::P), "{what}");
                        assert_eq!(snapshot, after, "no A/D on a fault: {what}");
                    } else {
                        let t = got.unwrap_or_else(|e| panic!("{what}: {e:?}"));
                        assert_eq!((t.writable, t.user, t.executable), (rw, us, !xd), "{what}");
                        let frame = if large { 0x80_0000 } else { 0x8000 };
                        assert_eq!(t.phys, frame | (lin & (t.page_size - 1)), "{what}");
                        // A on every entry (bar the PAE PDPTE), D on the leaf iff written.
                        let skip = usize::from(mode == PagingMode::Pae);
                        for (i, (&b, &a)) in snapshot.iter().zip(&after).enumerate() {
                            let mut want = b;
                            if i >= skip {
                                want |= A;
                            }
                            if i == used.len() - 1 && acc == Access::Write {
                                want |= D;
                            }
                            assert_eq!(a, want, "entry {i}: {what}");
                        }
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 50_000, "{checked}");
}

#[test]
fn exact_error_codes() {
    let mut tb = Tb::new();
    let lin = 0x60_0000;
    let (cr3, _) = tb.build(PagingMode::Level4, lin, 12, ALL, 0x7000 | P | XD);
    let mut r = regs(PagingMode::Level4, cr3);
    r.cr0 |= CR0_WP;
    r.efer |= EFER_NXE;
    r.cr4 |= CR4_SMEP | CR4_SMAP;
    // Supervisor read-only, XD page.
    assert!(tb.go(&r, lin, Access::Read).is_ok());
    assert_eq!(code(tb.go(&r, lin, Access::Write)), 0x03);
    assert_eq!(code(tb.go(&r, lin, Access::Execute)), 0x11);
    assert_eq!(code(tb.go_user(&r, lin, Access::Read)), 0x05);
    assert_eq!(code(tb.go_user(&r, lin, Access::Write)), 0x07);
    assert_eq!(code(tb.go_user(&r, lin, Access::Execute)), 0x15);
    // The same with NXE off: XD is reserved.
    r.efer &= !EFER_NXE;
    assert_eq!(code(tb.go(&r, lin, Access::Read)), 0x09);
    assert_eq!(code(tb.go_user(&r, lin, Access::Write)), 0x0f);
    assert_eq!(
        code(tb.go_user(&r, lin, Access::Execute)),
        0x1d,
        "I/D from SMEP"
    );
    // A user page under SMEP/SMAP.
    r.efer |= EFER_NXE;
    tb.build(PagingMode::Level4, lin, 12, ALL, 0x7000 | ALL);
    assert_eq!(code(tb.go(&r, lin, Access::Execute)), 0x11);
    assert_eq!(code(tb.go(&r, lin, Access::Read)), 0x01);
    assert!(walk(&mut tb.mem, &r, lin, Access::Write, false, false, true).is_ok());
    let got = walk(&mut tb.mem, &r, lin, Access::Write, false, true, true);
    assert_eq!(got, pf(0x03), "implicit accesses ignore AC");
}

#[test]
fn wp_and_dirty_on_supervisor_write_to_read_only_page() {
    let mut tb = Tb::new();
    let lin = 0x60_0000;
    let (cr3, used) = tb.build(PagingMode::Pae, lin, 12, P | RW, 0x7000 | P);
    let mut r = regs(PagingMode::Pae, cr3);
    let t = tb.go(&r, lin, Access::Write).unwrap();
    assert!(!t.writable && t.dirty);
    assert_eq!(tb.r(used[2], 8), 0x7000 | P | A | D);
    tb.w(used[2], 8, 0x7000 | P);
    r.cr0 |= CR0_WP;
    assert_eq!(code(tb.go(&r, lin, Access::Write)), pf::P | pf::W);
    assert_eq!(tb.r(used[2], 8), 0x7000 | P, "no A/D on the fault");
}

/// Protection keys (SDM Vol. 3 4.6.2) against the rules spelled out case by case: a 4 KiB
/// 4-level page with key 5, user or supervisor, with AD and WD of key 5 on or off in PKRU or
/// in IA32_PKRS (every other key's rights all set, so only key 5 may matter), CR4.PKE/PKS
/// on or off, CR0.WP 0 or 1, every access kind at CPL 0 and 3.
#[test]
fn protection_keys_against_the_sdm_rules() {
    const KEY: u32 = 5;
    let lin = 0x40_3000;
    let others = !(3u32 << (2 * KEY));
    let mut tb = Tb::new();
    for user_page in [false, true] {
        let leaf = 0x20_0000 | P | RW | A | D | if user_page { US } else { 0 };
        let (cr3, _) = tb.build(
            PagingMode::Level4,
            lin,
            12,
            ALL,
            leaf | u64::from(KEY) << 59,
        );
        for bits in 0..64u32 {
            let (ad, wd, wp) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
            let (pke, pks, in_pkru) = (bits & 8 != 0, bits & 16 != 0, bits & 32 != 0);
            let rights = others | u32::from(ad) << (2 * KEY) | u32::from(wd) << (2 * KEY + 1);
            let mut r = regs(PagingMode::Level4, cr3);
            r.cr0 |= if wp { CR0_WP } else { 0 };
            r.cr4 |= if pke { CR4_PKE } else { 0 } | if pks { CR4_PKS } else { 0 };
            // The rights sit in one register; the other grants everything.
            if in_pkru {
                r.pkru = rights;
            } else {
                r.pkrs = rights;
            }
            // PKRU governs user-mode pages under CR4.PKE, IA32_PKRS supervisor-mode pages
            // under CR4.PKS.
            let governs = if user_page {
                pke && in_pkru
            } else {
                pks && !in_pkru
            };
            for user in [false, true] {
                for access in [Access::Read, Access::Write, Access::Execute] {
                    let write = access == Access::Write;
                    let mut want = if write { pf::W } else { 0 } | if user { pf::U } else { 0 };
                    let ok = if user && !user_page {
                        // U/S decides first; no key is looked at.
                        want |= pf::P;
                        false
                    } else if access != Access::Execute
                        && governs
                        && (ad || (write && wd && (user || wp)))
                    {
                        want |= pf::P | pf::PK;
                        false
                    } else {
                        true
                    };
                    let got = walk(&mut tb.mem, &r, lin, access, user, false, false);
                    let what = format!(
                        "user page {user_page} ad {ad} wd {wd} wp {wp} pke {pke} pks {pks} \
                         rights in pkru {in_pkru} cpl3 {user} {access:?}"
                    );
                    if ok {
                        let t = got.unwrap_or_else(|f| panic!("{what}: {f:?}"));
                        assert_eq!(u32::from(t.key), KEY, "{what}");
                    } else {
                        assert_eq!(code(got), want, "{what}");
                    }
                }
            }
        }
    }
}

/// The exact error codes kvm-unit-tests' `pks` expects (QEMU gives the same): a supervisor
/// write to a supervisor page whose key has AD in IA32_PKRS is 0x23 (P, W, PK).
#[test]
fn protection_key_error_codes() {
    let mut tb = Tb::new();
    let lin = 0x7000;
    let (cr3, _) = tb.build(PagingMode::Level4, lin, 12, ALL, 0x9000 | P | RW | 2 << 59);
    let mut r = regs(PagingMode::Level4, cr3);
    r.cr0 |= CR0_WP;
    r.cr4 |= CR4_PKS;
    r.pkrs = 0x10; // AD for key 2
    assert_eq!(code(tb.go(&r, lin, Access::Write)), 0x23);
    assert_eq!(code(tb.go(&r, lin, Access::Read)), 0x21);
    // Instruction fetches are never checked against keys.
    assert!(tb.go(&r, lin, Access::Execute).is_ok());
    // WD for key 2: writes fault with CR0.WP = 1 only; reads never.
    r.pkrs = 0x20;
    assert_eq!(code(tb.go(&r, lin, Access::Write)), 0x23);
    assert!(tb.go(&r, lin, Access::Read).is_ok());
    r.cr0 &= !CR0_WP;
    assert!(tb.go(&r, lin, Access::Write).is_ok());
}

/// The key is the leaf's: keys in upper-level entries are ignored. PK is set even when R/W
/// would refuse the access too, implicit supervisor accesses honour PKRU as supervisor
/// accesses, a key fault sets no A bit, and PAE paging has no keys.
#[test]
fn protection_key_of_the_leaf_only() {
    let mut tb = Tb::new();
    let lin = 0x7000;
    let leaf = 0x9000 | P | US | 1 << 59; // read-only user page, key 1
    let (cr3, used) = tb.build(PagingMode::Level4, lin, 12, ALL | 7 << 59, leaf);
    let mut r = regs(PagingMode::Level4, cr3);
    r.cr4 |= CR4_PKE;
    r.pkru = 0b11 << 14; // AD and WD for key 7 only
    assert!(tb.go_user(&r, lin, Access::Read).is_ok());
    r.pkru = 0b10 << 2; // WD for key 1
    assert_eq!(
        code(tb.go_user(&r, lin, Access::Write)),
        pf::P | pf::W | pf::U | pf::PK
    );
    let pte = *used.last().unwrap();
    tb.w(pte, 8, leaf);
    r.pkru = 0b01 << 2; // AD for key 1
    assert_eq!(
        code(tb.go_user(&r, lin, Access::Read)),
        pf::P | pf::U | pf::PK
    );
    assert_eq!(tb.r(pte, 8) & A, 0, "no A bit on a key fault");
    let implicit = walk(&mut tb.mem, &r, lin, Access::Read, true, true, false);
    assert_eq!(code(implicit), pf::P | pf::PK);
    // Under PAE paging there are no keys: CR4.PKE changes nothing.
    let (cr3, _) = tb.build(PagingMode::Pae, lin, 12, P | RW | US, 0x9000 | P | US);
    let mut r = regs(PagingMode::Pae, cr3);
    r.cr4 |= CR4_PKE | CR4_PKS;
    r.pkru = u32::MAX;
    r.pkrs = u32::MAX;
    assert!(tb.go_user(&r, lin, Access::Read).is_ok());
    assert!(tb.go(&r, lin, Access::Write).is_ok());
}
