//! Tests of PCI configuration mechanism #1 and the two bridges: they drive ports
//! 0xCF8-0xCFF as a guest would.

use super::*;

const DATA_PORT: u16 = DATA;

fn host() -> PciHost {
    PciHost::new(PciBus::i440fx())
}

fn addr(dev: u32, func: u32, reg: u32) -> u32 {
    ADDR_ENABLE | dev << 11 | func << 8 | reg
}

fn cfg_read(h: &mut PciHost, dev: u32, func: u32, reg: u32, size: u8) -> u32 {
    h.write(0, 4, addr(dev, func, reg & 0xfc));
    h.read(DATA_PORT + (reg & 3) as u16, size)
}

fn cfg_write(h: &mut PciHost, dev: u32, func: u32, reg: u32, size: u8, v: u32) {
    h.write(0, 4, addr(dev, func, reg & 0xfc));
    h.write(DATA_PORT + (reg & 3) as u16, size, v);
}

#[test]
fn test_pci_config_address_round_trip() {
    let mut h = host();
    assert_eq!(h.read(0, 4), 0);
    // Linux's pci_check_type1 writes 0x80000000 and expects it back.
    h.write(0, 4, 0x8000_0000);
    assert_eq!(h.read(0, 4), 0x8000_0000);
    h.write(0, 4, 0x80ab_cdef);
    assert_eq!(h.read(0, 4), 0x80ab_cdec, "bits 1-0 read 0");
    h.write(0, 4, 0x7f00_0000);
    assert_eq!(h.read(0, 4), 0, "bits 30-24 are reserved");
    // Byte and word accesses are not CONFIG_ADDRESS.
    h.write(0, 4, 0x8000_0800);
    h.write(0, 1, 0);
    h.write(2, 2, 0);
    h.write(3, 1, 0x01);
    assert_eq!(h.read(0, 4), 0x8000_0800);
    assert_eq!(h.read(0, 2), 0xffff);
    assert_eq!(h.read(2, 1), 0xff);
}

#[test]
fn test_pci_vendor_device_ids() {
    let mut h = host();
    assert_eq!(cfg_read(&mut h, 0, 0, 0, 4), 0x1237_8086);
    assert_eq!(
        cfg_read(&mut h, 0, 0, 8, 4),
        0x0600_0002,
        "host bridge, rev 2"
    );
    assert_eq!(cfg_read(&mut h, 0, 0, 0xe, 1), 0);
    assert_eq!(cfg_read(&mut h, 1, 0, 0, 4), 0x7000_8086);
    assert_eq!(cfg_read(&mut h, 1, 0, 8, 4), 0x0601_0000, "ISA bridge");
    assert_eq!(cfg_read(&mut h, 1, 0, 0xe, 1), 0x80, "multi-function");
    for d in [0, 1] {
        assert_eq!(cfg_read(&mut h, d, 0, 0x2c, 4), 0x1100_1af4, "subsystem");
        for bar in (0x10..0x28).step_by(4) {
            assert_eq!(cfg_read(&mut h, d, 0, bar, 4), 0, "no BARs");
        }
        assert_eq!(cfg_read(&mut h, d, 0, 0x34, 1), 0, "no capabilities");
        assert_eq!(cfg_read(&mut h, d, 0, 0x3d, 1), 0, "no interrupt pin");
    }
}

#[test]
fn test_pci_absent_functions_read_all_ones() {
    let mut h = host();
    assert_eq!(cfg_read(&mut h, 2, 0, 0, 4), 0xffff_ffff);
    assert_eq!(cfg_read(&mut h, 0, 1, 0, 4), 0xffff_ffff);
    assert_eq!(cfg_read(&mut h, 1, 1, 0, 2), 0xffff);
    assert_eq!(cfg_read(&mut h, 31, 7, 0xfc, 1), 0xff);
    // Bus 1 does not exist.
    h.write(0, 4, ADDR_ENABLE | 1 << 16);
    assert_eq!(h.read(DATA_PORT, 4), 0xffff_ffff);
    // Window disabled.
    h.write(0, 4, 0);
    assert_eq!(h.read(DATA_PORT, 4), 0xffff_ffff);
    h.write(DATA_PORT, 4, 0);
    assert_eq!(cfg_read(&mut h, 0, 0, 0, 4), 0x1237_8086);
    // Writes to absent functions vanish.
    cfg_write(&mut h, 5, 0, 0x3c, 1, 0x0b);
    assert_eq!(cfg_read(&mut h, 5, 0, 0x3c, 1), 0xff);
}

#[test]
fn test_pci_byte_and_word_data_access() {
    let mut h = host();
    h.write(0, 4, addr(0, 0, 0));
    assert_eq!(h.read(DATA_PORT, 1), 0x86);
    assert_eq!(h.read(DATA_PORT + 1, 1), 0x80, "0xCFD");
    assert_eq!(h.read(DATA_PORT + 2, 2), 0x1237, "0xCFE");
    assert_eq!(h.read(DATA_PORT + 3, 1), 0x12);
    assert_eq!(
        h.read(DATA_PORT + 1, 2),
        0x3780,
        "straddling bytes of one dword"
    );
    assert_eq!(
        h.read(DATA_PORT + 2, 4),
        0xffff_1237,
        "past 0xCFF floats high"
    );
    // Interrupt line through 0xCFC, latency timer through 0xCFD.
    cfg_write(&mut h, 1, 0, 0x3c, 1, 0x0b);
    assert_eq!(cfg_read(&mut h, 1, 0, 0x3c, 4), 0x0b);
    cfg_write(&mut h, 1, 0, 0x0d, 1, 0x40);
    assert_eq!(cfg_read(&mut h, 1, 0, 0x0c, 4), 0x0080_4000);
    // A word at 0xCFE: the status register.
    cfg_write(&mut h, 0, 0, 0x06, 2, 0);
    assert_eq!(cfg_read(&mut h, 0, 0, 0x06, 2), 0x0280);
}

#[test]
fn test_pci_read_only_fields() {
    let mut h = host();
    for d in [0, 1] {
        let before: Vec<u32> = (0..64).map(|r| cfg_read(&mut h, d, 0, r * 4, 4)).collect();
        for r in [
            0x00, 0x08, 0x10, 0x14, 0x18, 0x1c, 0x20, 0x24, 0x28, 0x2c, 0x30, 0x34,
        ] {
            cfg_write(&mut h, d, 0, r, 4, 0xffff_ffff);
        }
        cfg_write(&mut h, d, 0, 0x0e, 1, 0x00);
        cfg_write(&mut h, d, 0, 0x3d, 1, 0x01);
        let after: Vec<u32> = (0..64).map(|r| cfg_read(&mut h, d, 0, r * 4, 4)).collect();
        for r in [0usize, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13] {
            assert_eq!(before[r], after[r], "device {d} dword {r:#x}");
        }
        assert_eq!(after[3] >> 16, before[3] >> 16, "header type and BIST");
        assert_eq!(after[15] >> 8, before[15] >> 8, "interrupt pin");
    }
    // Command: the defined bits change, the rest stay.
    cfg_write(&mut h, 0, 0, 0x04, 2, 0xffff);
    assert_eq!(cfg_read(&mut h, 0, 0, 0x04, 2), 0x0547);
    cfg_write(&mut h, 0, 0, 0x04, 2, 0);
    assert_eq!(cfg_read(&mut h, 0, 0, 0x04, 2), 0);
    // Status error bits clear when 1 is written.
    let HostBridge { config } = &mut HostBridge::new();
    config.set_u16(STATUS, 0x2280);
    config.write(STATUS, 2, 0x0080);
    assert_eq!(
        config.read(STATUS, 2),
        0x2280,
        "read-only bit 7 stays; 0 leaves bit 13"
    );
    config.write(STATUS, 2, 0x2000);
    assert_eq!(config.read(STATUS, 2), 0x0280);
}

#[test]
fn test_piix3_pirq_routing() {
    let mut h = host();
    assert_eq!(cfg_read(&mut h, 1, 0, 0x60, 4), 0x8080_8080, "disabled");
    cfg_write(&mut h, 1, 0, 0x60, 4, 0x0b0b_0a0a);
    cfg_write(&mut h, 1, 0, 0x61, 1, 0x7f); // reserved bits 6-4 stay 0
    assert_eq!(cfg_read(&mut h, 1, 0, 0x60, 4), 0x0b0b_0f0a);
    let raw = h.bus().config_read(1, 0, PIIX3_PIRQRC, 4).to_le_bytes();
    let routes: Vec<_> = raw.iter().map(|&b| pirq_irq(b)).collect();
    assert_eq!(routes, [Some(10), Some(15), Some(11), Some(11)]);
    assert_eq!(pirq_irq(0x80), None);
    assert_eq!(pirq_irq(0x02), None, "IRQ 2 cannot be routed");
    let mut isa = IsaBridge::new();
    isa.config_write(0x62, 1, 0x05);
    assert_eq!(isa.pirq_route(2), Some(5));
    assert_eq!(isa.pirq_route(0), None);
    assert_eq!(isa.pirq_route(4), None);
    let mut hb = HostBridge::new();
    hb.config_write(0x59, 1, 0x30);
    assert_eq!(hb.pam(0), Some(0x30));
    assert_eq!(hb.pam(7), None);
    assert_eq!(hb.smram(), 0x02);
}

#[test]
fn test_pci_enumeration_finds_the_two_bridges() {
    // Linux's and lspci's scan: vendor of function 0, then 1-7 if multi-function.
    let mut h = host();
    let mut found = vec![];
    for dev in 0..32 {
        for func in 0..8 {
            let id = cfg_read(&mut h, dev, func, 0, 4);
            if id & 0xffff == 0xffff {
                if func == 0 {
                    break;
                }
                continue;
            }
            found.push((dev, func, id));
            if func == 0 && cfg_read(&mut h, dev, 0, 0x0e, 1) & 0x80 == 0 {
                break;
            }
        }
    }
    assert_eq!(found, [(0, 0, 0x1237_8086), (1, 0, 0x7000_8086)]);
}

#[test]
fn test_pci_bus_insert_errors() {
    let mut bus = PciBus::i440fx();
    let f = || Box::new(IsaBridge::new()) as Box<dyn PciFunction>;
    assert_eq!(
        bus.insert(1, 0, f()),
        Err(PciError::Occupied {
            device: 1,
            function: 0
        })
    );
    assert_eq!(
        bus.insert(32, 0, f()),
        Err(PciError::BadAddress {
            device: 32,
            function: 0
        })
    );
    assert_eq!(bus.insert(1, 1, f()), Ok(()));
    assert!(bus.function_mut(1, 1).is_some());
}

#[test]
fn test_reset_through_the_pci_window() {
    let mut h = host();
    h.write(0, 4, 0x8000_0000);
    h.write(RESET, 1, 0x02);
    assert_eq!(h.take_reset_request(), None);
    h.write(RESET, 1, 0x06);
    assert_eq!(h.take_reset_request(), Some(ResetKind::System));
    assert_eq!(h.read(RESET, 1), 0x02);
    assert_eq!(h.config_address(), 0x8000_0000, "CONFIG_ADDRESS untouched");
}

#[test]
fn test_pci_random_access_never_panics() {
    let host = Arc::new(Mutex::new(host()));
    let mut dev = PciHostPorts { host: host.clone() };
    let mut x: u64 = 0xc0ff_ee00;
    for _ in 0..200_000 {
        x = crate::testing::lcg(x);
        let r = (x >> 16) as u32;
        let offset = (r % 10) as u16;
        let size = [1, 2, 4, 3, 0][((r >> 4) % 5) as usize];
        let value = (x >> 32) as u32;
        match (r >> 8) % 4 {
            0 => drop(dev.read(offset, size)),
            1 => dev.write(0, 4, value & 0x8000_ffff),
            _ => dev.write(offset, size, value),
        }
        let _ = host.lock().take_reset_request();
    }
    let mut cs = HostBridge::new().config;
    for o in 0..=255u8 {
        cs.write(o, 4, u32::MAX);
        let _ = cs.read(o, 4);
    }
}
