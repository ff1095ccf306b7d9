//! Tests of the pic device: they drive its registers as a guest would.

use super::*;

const M: PicChip = PicChip::Master;
const S: PicChip = PicChip::Slave;

/// Linux's and the BIOS's sequence: edge, cascade, 8086 mode, vectors 0x20 and 0x28.
fn init(pic: &mut PicPair, icw4: u8) {
    for (chip, base, icw3) in [(M, 0x20, 0x04), (S, 0x28, 0x02)] {
        pic.write_port(chip, 0, 0x11);
        pic.write_port(chip, 1, base);
        pic.write_port(chip, 1, icw3);
        pic.write_port(chip, 1, icw4);
    }
}

fn ready() -> PicPair {
    let mut pic = PicPair::new();
    init(&mut pic, 0x01);
    pic
}

fn pulse(pic: &mut PicPair, irq: u8) {
    pic.set_irq(irq, true);
    pic.set_irq(irq, false);
}

fn eoi(pic: &mut PicPair, chip: PicChip) {
    pic.write_port(chip, 0, 0x20);
}

#[test]
fn test_pic_icw_init() {
    let mut pic = PicPair::new();
    pic.write_port(M, 1, 0x55); // IMR before init
    init(&mut pic, 0x01);
    assert_eq!(pic.read_port(M, 1), 0, "ICW1 clears the IMR");
    assert_eq!(pic.chip(M).vector_base, 0x20);
    assert_eq!(pic.chip(S).vector_base, 0x28);
    assert_eq!(pic.chip(M).cascade, 0x04);
    assert_eq!(pic.chip(S).cascade, 0x02);
    assert_eq!(pic.chip(M).init_step, 0);
    pic.write_port(M, 1, 0xfb);
    assert_eq!(
        pic.read_port(M, 1),
        0xfb,
        "after init the data port is the IMR"
    );
    // Single mode without ICW4: ICW2 ends the sequence; low vector bits are ignored.
    pic.write_port(M, 0, 0x12);
    pic.write_port(M, 1, 0x47);
    assert_eq!(pic.chip(M).vector_base, 0x40);
    pic.write_port(M, 1, 0x03);
    assert_eq!(pic.read_port(M, 1), 0x03);
    assert!(!pic.chip(M).auto_eoi);
}

#[test]
fn test_pic_mask() {
    let mut pic = ready();
    pic.write_port(M, 1, 0x02);
    pulse(&mut pic, 1);
    assert!(!pic.has_interrupt(), "masked");
    assert_eq!(pic.read_port(M, 0), 0x02, "but requested in the IRR");
    pic.write_port(M, 1, 0x00);
    assert!(pic.has_interrupt());
    assert_eq!(pic.acknowledge(), 0x21);
    assert!(!pic.has_interrupt());
    assert_eq!(pic.read_port(M, 0), 0x00, "edge request cleared by INTA");
}

#[test]
fn test_pic_priorities_and_eoi_order() {
    let mut pic = ready();
    pulse(&mut pic, 3);
    pulse(&mut pic, 1);
    assert_eq!(pic.acknowledge(), 0x21, "IRQ 1 beats IRQ 3");
    assert!(!pic.has_interrupt(), "IRQ 3 waits for IRQ 1's EOI");
    pulse(&mut pic, 0);
    assert_eq!(pic.acknowledge(), 0x20, "IRQ 0 nests over IRQ 1");
    pic.write_port(M, 0, 0x0b); // read ISR
    assert_eq!(pic.read_port(M, 0), 0x03);
    eoi(&mut pic, M); // clears IRQ 0, the highest in service
    assert_eq!(pic.read_port(M, 0), 0x02);
    assert!(!pic.has_interrupt());
    eoi(&mut pic, M);
    assert!(pic.has_interrupt());
    assert_eq!(pic.acknowledge(), 0x23);
    pic.write_port(M, 0, 0x60 | 3); // specific EOI for IRQ 3
    assert_eq!(pic.read_port(M, 0), 0x00);
    pic.write_port(M, 0, 0x0a); // read IRR
    assert_eq!(pic.read_port(M, 0), 0x00);
}

#[test]
fn test_pic_rotation() {
    let mut pic = ready();
    pulse(&mut pic, 4);
    assert_eq!(pic.acknowledge(), 0x24);
    pic.write_port(M, 0, 0xa0); // rotate on non-specific EOI: IRQ 4 becomes lowest
    pulse(&mut pic, 4);
    pulse(&mut pic, 6);
    pulse(&mut pic, 1);
    assert_eq!(pic.acknowledge(), 0x26, "order is now 5, 6, 7, 0, 1, ... 4");
    pic.write_port(M, 0, 0xe0 | 6); // rotate on specific EOI: IRQ 7 highest
    assert_eq!(pic.acknowledge(), 0x21);
    pic.write_port(M, 0, 0x20);
    pic.write_port(M, 0, 0xc0 | 1); // set priority: IRQ 1 lowest, so 2 highest
    pulse(&mut pic, 3);
    pulse(&mut pic, 1);
    assert_eq!(pic.acknowledge(), 0x23);
    assert_eq!(
        pic.acknowledge(),
        0x27,
        "nothing outranks 3 in service: spurious"
    );
    eoi(&mut pic, M);
    assert_eq!(pic.acknowledge(), 0x24, "4 outranks 1");
    eoi(&mut pic, M);
    assert_eq!(pic.acknowledge(), 0x21);
}

#[test]
fn test_pic_cascade_through_slave() {
    let mut pic = ready();
    pic.set_irq(12, true);
    assert!(pic.has_interrupt());
    assert_eq!(pic.acknowledge(), 0x2c);
    assert_eq!(pic.chip(M).isr, 1 << 2);
    assert_eq!(pic.chip(S).isr, 1 << 4);
    pulse(&mut pic, 9);
    assert!(!pic.has_interrupt(), "the cascade input is in service");
    eoi(&mut pic, S);
    assert!(
        !pic.has_interrupt(),
        "the master still has IRQ 2 in service"
    );
    eoi(&mut pic, M);
    assert!(pic.has_interrupt());
    assert_eq!(pic.acknowledge(), 0x29);
    // Masking the slave's input, or the cascade at the master, hides it.
    eoi(&mut pic, S);
    eoi(&mut pic, M);
    pic.write_port(S, 1, 0x01);
    pulse(&mut pic, 8);
    assert!(!pic.has_interrupt());
    pic.write_port(S, 1, 0x00);
    pic.write_port(M, 1, 0x04);
    assert!(!pic.has_interrupt());
    pic.write_port(M, 1, 0x00);
    assert_eq!(pic.acknowledge(), 0x28);
}

#[test]
fn test_pic_special_fully_nested() {
    let mut pic = PicPair::new();
    init(&mut pic, 0x11);
    pulse(&mut pic, 12);
    assert_eq!(pic.acknowledge(), 0x2c);
    pulse(&mut pic, 9);
    assert!(pic.has_interrupt(), "a higher slave input gets through");
    assert_eq!(pic.acknowledge(), 0x29);
    pulse(&mut pic, 14);
    assert!(!pic.has_interrupt(), "a lower one does not");
}

#[test]
fn test_pic_level_vs_edge_elcr() {
    let pic = Arc::new(Mutex::new(ready()));
    let mut elcr = ElcrPorts { pic: pic.clone() };
    elcr.write(0, 2, 0xffff);
    assert_eq!(elcr.read(0, 2), 0xdef8, "IRQ 0-2, 8 and 13 are always edge");
    elcr.write(0, 2, 0x0420); // IRQ 5 and 10 level
    let mut pic = pic.lock();
    // Level IRQ 10: requests again after EOI while the line stays high.
    pic.set_irq(10, true);
    assert_eq!(pic.acknowledge(), 0x2a);
    eoi(&mut pic, S);
    eoi(&mut pic, M);
    assert!(pic.has_interrupt());
    assert_eq!(pic.acknowledge(), 0x2a);
    pic.set_irq(10, false);
    eoi(&mut pic, S);
    eoi(&mut pic, M);
    assert!(!pic.has_interrupt());
    // Edge IRQ 11: one interrupt per rising edge, however long the line stays high.
    pic.set_irq(11, true);
    assert_eq!(pic.acknowledge(), 0x2b);
    eoi(&mut pic, S);
    eoi(&mut pic, M);
    assert!(!pic.has_interrupt());
    pic.set_irq(11, true);
    assert!(!pic.has_interrupt(), "no new edge");
    pic.set_irq(11, false);
    pic.set_irq(11, true);
    assert_eq!(pic.acknowledge(), 0x2b);
    // ICW1 LTIM makes every master input level.
    pic.write_port(M, 0, 0x19);
    pic.write_port(M, 1, 0x20);
    pic.write_port(M, 1, 0x04);
    pic.write_port(M, 1, 0x01);
    pic.set_irq(3, true);
    pic.set_irq(3, false);
    assert!(
        !pic.has_interrupt(),
        "a level input that dropped requests nothing"
    );
}

#[test]
fn test_pic_auto_eoi() {
    let mut pic = PicPair::new();
    init(&mut pic, 0x03);
    pulse(&mut pic, 1);
    assert_eq!(pic.acknowledge(), 0x21);
    assert_eq!(pic.chip(M).isr, 0);
    pulse(&mut pic, 1);
    assert_eq!(pic.acknowledge(), 0x21, "no EOI needed");
    // Rotate on auto-EOI: the acknowledged input becomes the lowest.
    pic.write_port(M, 0, 0x80);
    pulse(&mut pic, 3);
    assert_eq!(pic.acknowledge(), 0x23);
    pulse(&mut pic, 3);
    pulse(&mut pic, 5);
    assert_eq!(pic.acknowledge(), 0x25);
    pic.write_port(M, 0, 0x00);
    assert!(!pic.chip(M).rotate_on_aeoi);
}

#[test]
fn test_pic_spurious_irq7_and_irq15() {
    let mut pic = ready();
    pic.set_elcr(M, 0x10);
    pic.set_irq(4, true);
    assert!(pic.has_interrupt());
    pic.set_irq(4, false);
    assert_eq!(pic.acknowledge(), 0x27, "request vanished before INTA");
    assert_eq!(pic.chip(M).isr, 0, "a spurious IRQ 7 sets no ISR bit");
    // From the slave: the master acknowledges IRQ 2, the slave finds nothing.
    pic.set_elcr(S, 0x08);
    pic.set_irq(11, true);
    assert!(pic.has_interrupt());
    // The slave's request vanishes while the master's cascade edge is latched.
    pic.set_irq(11, false);
    assert_eq!(pic.acknowledge(), 0x2f);
    assert_eq!(pic.chip(S).isr, 0);
    assert_eq!(pic.chip(M).isr, 0x04, "the master still needs its EOI");
}

#[test]
fn test_pic_poll_mode() {
    let mut pic = ready();
    pic.write_port(M, 0, 0x0c);
    assert_eq!(pic.read_port(M, 0), 0x00, "nothing pending");
    pulse(&mut pic, 6);
    pulse(&mut pic, 5);
    pic.write_port(M, 0, 0x0c);
    assert_eq!(pic.read_port(M, 1), 0x85, "poll on either port");
    assert_eq!(pic.chip(M).isr, 0x20, "poll acknowledges");
    assert_eq!(pic.read_port(M, 1), 0x00, "then the port is the IMR again");
    eoi(&mut pic, M);
    pulse(&mut pic, 13);
    pic.write_port(S, 0, 0x0c);
    assert_eq!(pic.read_port(S, 0), 0x85);
    assert_eq!(pic.chip(S).isr, 0x20);
}

#[test]
fn test_pic_special_mask_mode() {
    let mut pic = ready();
    pulse(&mut pic, 3);
    assert_eq!(pic.acknowledge(), 0x23);
    pulse(&mut pic, 5);
    assert!(!pic.has_interrupt());
    pic.write_port(M, 1, 0x08); // mask the in-service IRQ 3
    pic.write_port(M, 0, 0x68); // special mask mode on
    assert!(pic.has_interrupt(), "lower priorities are enabled");
    assert_eq!(pic.acknowledge(), 0x25);
    pic.write_port(M, 0, 0x48); // off
    assert!(!pic.chip(M).special_mask);
}

#[test]
fn test_pic_line_and_snapshot() {
    let pic = Arc::new(Mutex::new(ready()));
    let line = PicLine {
        pic: pic.clone(),
        irq: 14,
    };
    line.pulse();
    let saved = pic.lock().state();
    assert_eq!(pic.lock().acknowledge(), 0x2e);
    let mut other = PicPair::new();
    other.restore(&saved);
    assert_eq!(other.state(), saved);
    assert!(other.has_interrupt());
    assert_eq!(other.acknowledge(), 0x2e);
    // Through the port adapters, 16-bit accesses split into bytes.
    let mut ports = PicPorts {
        pic: pic.clone(),
        chip: S,
    };
    ports.write(1, 1, 0xa5);
    assert_eq!(ports.read(0, 2) >> 8, 0xa5);
    assert_eq!(ports.read(1, 2), 0xffa5);
}

#[test]
fn test_pic_random_access_never_panics() {
    let pic = Arc::new(Mutex::new(PicPair::new()));
    let mut devs: Vec<Box<dyn PortDevice>> = vec![
        Box::new(PicPorts {
            pic: pic.clone(),
            chip: M,
        }),
        Box::new(PicPorts {
            pic: pic.clone(),
            chip: S,
        }),
        Box::new(ElcrPorts { pic: pic.clone() }),
    ];
    let mut x: u64 = 0x1234_5678;
    for _ in 0..200_000 {
        x = crate::testing::lcg(x);
        let r = (x >> 16) as u32;
        let dev = &mut devs[(r % 3) as usize];
        let offset = ((r >> 2) % 4) as u16;
        let size = [1, 2, 4, 3, 0][((r >> 4) % 5) as usize];
        match (r >> 8) % 4 {
            0 => drop(dev.read(offset, size)),
            1 => dev.write(offset, size, (x >> 40) as u32),
            2 => pic
                .lock()
                .set_irq(((r >> 10) % 20) as u8, r & (1 << 20) != 0),
            _ => {
                let mut p = pic.lock();
                if p.has_interrupt() {
                    p.acknowledge();
                }
            }
        }
    }
}
