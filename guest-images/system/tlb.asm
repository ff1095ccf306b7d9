; tlb: page-table writes and TLB invalidation, checking only what the SDM requires.
; - remap a page to another frame without invalidating: the access may use either the old
;   or the new translation (the SDM allows a stale TLB entry), so only "one of the two" is
;   checked; after INVLPG the new frame must be used;
; - the same with MOV CR3 (reloading the same value) instead of INVLPG;
; - present -> not present, then INVLPG: the access must fault;
; - not present -> present needs no invalidation (not-present entries are never cached);
; - a 4 MiB page remapped, INVLPG of another address inside it: the new frame is used;
; - 4-level paging: remap, INVLPG, new frame.

%include "lib.inc"

PD              equ SCRATCH
PT              equ SCRATCH + 0x1000
L4_PML4         equ SCRATCH + 0x2000
L4_PDPT         equ SCRATCH + 0x3000
L4_PD0          equ SCRATCH + 0x4000
L4_PD1          equ SCRATCH + 0x5000
L4_PT           equ SCRATCH + 0x6000
VA              equ 0x40000000
VA_LARGE        equ 0x40400000
FRAME1          equ SCRATCH + 0x10000
FRAME2          equ SCRATCH + 0x11000
LARGE1          equ 0x800000            ; 4 MiB frames
LARGE2          equ 0xc00000

main:
        mov     edi, PD
        call    pd32_identity
        mov     edi, PT
        xor     eax, eax
        mov     ecx, 1024
        rep stosd
        mov     dword [FRAME1], 0x11111111
        mov     dword [FRAME2], 0x22222222
        mov     dword [LARGE1 + 0x2000], 0x33333333
        mov     dword [LARGE2 + 0x2000], 0x44444444
        mov     dword [PD + 4 * (VA >> 22)], PT | PTE_P | PTE_W
        mov     dword [PT], FRAME1 | PTE_P | PTE_W
        mov     dword [PD + 4 * (VA_LARGE >> 22)], LARGE1 | PTE_P | PTE_W | PTE_PS
        mov     eax, PD
        call    paging32_on

        ; remap without invalidation: old or new; then INVLPG: new
        CHECK   "first mapping", dword [VA], 0x11111111
        mov     dword [PT], FRAME2 | PTE_P | PTE_W
        mov     eax, [VA]
        cmp     eax, 0x11111111
        je      .either
        cmp     eax, 0x22222222
.either:
        sete    al
        movzx   eax, al
        CHECK   "remapped, not invalidated: old or new frame", eax, 1
        invlpg  [VA]
        CHECK   "remapped, invlpg: new frame", dword [VA], 0x22222222

        ; remap back, invalidate by reloading CR3
        mov     dword [PT], FRAME1 | PTE_P | PTE_W
        mov     eax, cr3
        mov     cr3, eax
        CHECK   "remapped, cr3 reload: new frame", dword [VA], 0x11111111

        ; present -> not present, INVLPG: fault
        mov     dword [PT], FRAME1
        invlpg  [VA]
        ARM_RESUME .np_done
        mov     eax, [VA + 0x10]
.np_done:
        VERIFY  "unmapped, invlpg: faults", M_VEC | M_ERR, 14, 0
        ; not present -> present: no invalidation needed
        mov     dword [PT], FRAME2 | PTE_P | PTE_W
        CHECK   "mapped again without invlpg: new frame", dword [VA], 0x22222222

        ; 4 MiB page remapped; INVLPG of a different address in it
        CHECK   "large page: first frame", dword [VA_LARGE + 0x2000], 0x33333333
        mov     dword [PD + 4 * (VA_LARGE >> 22)], LARGE2 | PTE_P | PTE_W | PTE_PS
        invlpg  [VA_LARGE + 0x3ff000]
        CHECK   "large page: invlpg elsewhere in it, new frame", dword [VA_LARGE + 0x2000], \
                0x44444444
        call    paging32_off

        ; ---- 4-level ----
        mov     edi, L4_PML4
        xor     eax, eax
        mov     ecx, 5 * 1024
        rep stosd
        mov     dword [L4_PML4], L4_PDPT | PTE_P | PTE_W | PTE_U
        mov     dword [L4_PDPT], L4_PD0 | PTE_P | PTE_W | PTE_U
        mov     dword [L4_PDPT + 8], L4_PD1 | PTE_P | PTE_W
        mov     edi, L4_PD0
        mov     eax, PTE_P | PTE_W | PTE_U | PTE_PS
        call    pd64_identity_16m
        mov     dword [L4_PD1], L4_PT | PTE_P | PTE_W
        mov     dword [L4_PT], FRAME1 | PTE_P | PTE_W
        mov     eax, long_tests
        mov     ebx, L4_PML4
        call    run_in_long
        ret

        bits    64
long_tests:
        mov     eax, [abs VA]
        CHECK   "4-level: first mapping", rax, 0x11111111
        mov     dword [abs L4_PT], FRAME2 | PTE_P | PTE_W
        invlpg  [abs VA]
        mov     eax, [abs VA]
        CHECK   "4-level: remapped, invlpg: new frame", rax, 0x22222222
        ret
        bits    32

GUEST_END
