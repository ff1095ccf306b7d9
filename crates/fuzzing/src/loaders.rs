//! Corrupted kernel images and command lines for the loaders.
//!
//! The first input byte picks a starting point: a valid bzImage, a valid multiboot image in
//! the a.out-kludge form or as an ELF32 executable (each with a small 32-bit payload that
//! prints and exits), or raw bytes taken as the image. Then come a command line, the size of
//! an initrd or module, and patches (offset, byte) over the image, and a length to cut it to.
//! Starting from valid images lets the fuzzer corrupt one field at a time and reach every
//! check of the loaders; the raw form covers what does not even look like an image.
//!
//! The oracle: loading returns `Ok` or one of the loader's errors, never a panic; an image
//! that loads then runs for a bounded number of instructions on the PC board.

use crane86_machine::loader::multiboot::Module;

use crate::{Bytes, Finding};

/// Guest RAM: enough for the firmware tables, small enough that big fields overflow it.
const RAM: u64 = 32 << 20;
/// Instructions a loaded image runs.
const BUDGET: u64 = 20_000;
/// The payload's address.
const LOAD: u32 = 0x10_0000;

/// 32-bit code: print "ok\n" on COM1, then write 0 to isa-debug-exit.
const PAYLOAD: [u8; 20] = [
    0xba, 0xf8, 0x03, 0x00, 0x00, // mov edx, 0x3f8
    0xb0, b'o', 0xee, // mov al, 'o'; out dx, al
    0xb0, b'k', 0xee, // mov al, 'k'; out dx, al
    0xb0, b'\n', 0xee, // mov al, '\n'; out dx, al
    0x31, 0xc0, 0xe6, 0xf4, // xor eax, eax; out 0xf4, al
    0xf4, 0x90, // hlt; nop
];

/// What the image is taken as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A Linux bzImage (`--kernel`).
    Linux,
    /// A multiboot v1 image (`--multiboot`).
    Multiboot,
}

/// A bzImage: one setup sector after the boot sector, protocol 2.15, the payload as the
/// protected-mode kernel.
pub fn bzimage() -> Vec<u8> {
    let mut img = vec![0u8; 1024];
    img[0x1f1] = 1; // setup_sects
    img[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    img[0x200] = 0xeb; // jmp over the header: its end is 0x202 + img[0x201]
    img[0x201] = 0x66;
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    img[0x211] = 1; // loadflags: LOADED_HIGH
    img[0x214..0x218].copy_from_slice(&LOAD.to_le_bytes()); // code32_start
    img[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes()); // initrd_addr_max
    img[0x238..0x23c].copy_from_slice(&2048u32.to_le_bytes()); // cmdline_size
    img[0x260..0x264].copy_from_slice(&0x10_0000u32.to_le_bytes()); // init_size
    img.extend_from_slice(&PAYLOAD);
    img
}

/// A multiboot image with the a.out kludge: header at offset 0, loaded at 1 MiB, entered
/// right after the 32-byte header.
pub fn multiboot_aout() -> Vec<u8> {
    let magic: u32 = 0x1bad_b002;
    let flags: u32 = 1 << 16 | 0b11;
    let mut img = Vec::new();
    for v in [
        magic,
        flags,
        0u32.wrapping_sub(magic.wrapping_add(flags)),
        LOAD,
        LOAD,
        0,
        0,
        LOAD + 32,
    ] {
        img.extend_from_slice(&v.to_le_bytes());
    }
    img.extend_from_slice(&PAYLOAD);
    img
}

/// A multiboot ELF32 executable: file header, one `PT_LOAD` program header, the multiboot
/// header (no a.out kludge), then the payload, loaded at 1 MiB.
pub fn multiboot_elf() -> Vec<u8> {
    const EHDR: usize = 52;
    const PHDR: usize = 32;
    let text = EHDR + PHDR + 12;
    let mut img = vec![0u8; text];
    img[..4].copy_from_slice(b"\x7fELF");
    img[4] = 1; // ELFCLASS32
    img[5] = 1; // little endian
    img[6] = 1; // EV_CURRENT
    img[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    img[18..20].copy_from_slice(&3u16.to_le_bytes()); // EM_386
    img[20..24].copy_from_slice(&1u32.to_le_bytes());
    let entry = LOAD + text as u32;
    img[24..28].copy_from_slice(&entry.to_le_bytes());
    img[28..32].copy_from_slice(&(EHDR as u32).to_le_bytes()); // e_phoff
    img[40..42].copy_from_slice(&(EHDR as u16).to_le_bytes()); // e_ehsize
    img[42..44].copy_from_slice(&(PHDR as u16).to_le_bytes()); // e_phentsize
    img[44..46].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    let size = (text + PAYLOAD.len()) as u32;
    let ph = [1u32, 0, LOAD, LOAD, size, size + 0x1000, 7, 0x1000];
    for (i, v) in ph.iter().enumerate() {
        img[EHDR + 4 * i..EHDR + 4 * i + 4].copy_from_slice(&v.to_le_bytes());
    }
    let magic: u32 = 0x1bad_b002;
    let flags: u32 = 0b11;
    for (i, v) in [magic, flags, 0u32.wrapping_sub(magic.wrapping_add(flags))]
        .iter()
        .enumerate()
    {
        let at = EHDR + PHDR + 4 * i;
        img[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    img.extend_from_slice(&PAYLOAD);
    img
}

/// The image, its kind, command line and initrd size an input describes.
pub fn describe(data: &[u8]) -> (Kind, Vec<u8>, String, usize) {
    let mut input = Bytes::new(data);
    let form = input.u8();
    let cmd_len = usize::from(input.u8());
    let cmdline = String::from_utf8_lossy(input.rest(cmd_len)).into_owned();
    // Up to 16 MiB of initrd in 64 KiB steps, or none.
    let initrd = usize::from(input.u8()) << 16;
    let (kind, mut image) = match form % 4 {
        0 => (Kind::Linux, bzimage()),
        1 => (Kind::Multiboot, multiboot_aout()),
        2 => (Kind::Multiboot, multiboot_elf()),
        _ => {
            let kind = if form & 0x80 != 0 {
                Kind::Linux
            } else {
                Kind::Multiboot
            };
            return (kind, input.rest(1 << 16).to_vec(), cmdline, initrd);
        }
    };
    let patches = input.u8();
    for _ in 0..patches {
        let at = usize::from(input.u16()) % image.len();
        image[at] = input.u8();
    }
    let cut = usize::from(input.u16());
    if cut != 0 && cut < image.len() {
        image.truncate(cut);
    }
    // What is left grows the image (a longer payload, or bytes the header points into).
    image.extend_from_slice(input.rest(1 << 16));
    (kind, image, cmdline, initrd)
}

/// Loads the image `data` describes on a fresh PC board and runs it briefly.
pub fn run(data: &[u8]) -> Result<(), Finding> {
    let (kind, image, cmdline, initrd_len) = describe(data);
    let mut m = crate::pc_machine(RAM)?;
    let initrd = vec![0x5a; initrd_len];
    let loaded = match kind {
        Kind::Linux => m.load_linux(&image, (initrd_len > 0).then_some(&initrd[..]), &cmdline),
        Kind::Multiboot => {
            let modules = [Module {
                data: &initrd,
                cmdline: "module",
            }];
            let n = usize::from(initrd_len > 0);
            m.load_multiboot(&image, &cmdline, &modules[..n])
        }
    };
    if loaded.is_ok() {
        m.run(Some(BUDGET))
            .map_err(|e| Finding(format!("machine error after loading: {e}")))?;
    }
    Ok(())
}
