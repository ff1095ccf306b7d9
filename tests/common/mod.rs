//! Pieces several test files share.

/// A multiboot v1 image with the a.out kludge: loaded at 1 MiB, entered in 32-bit protected
/// mode right after its 32-byte header, where `code` starts.
pub fn multiboot_image(code: &[u8]) -> Vec<u8> {
    let magic: u32 = 0x1bad_b002;
    let flags: u32 = 1 << 16;
    let mut img = Vec::new();
    for v in [
        magic,
        flags,
        0u32.wrapping_sub(magic.wrapping_add(flags)),
        0x10_0000,
        0x10_0000,
        0,
        0,
        0x10_0020,
    ] {
        img.extend_from_slice(&v.to_le_bytes());
    }
    img.extend_from_slice(code);
    img
}
