; ad_bits: the accessed and dirty flags the processor sets in paging-structure entries.
; 32-bit paging, 4 KiB page: a read sets A in the PDE and the PTE but not D; a write sets D
; in the PTE; after software clears A/D and invalidates the entry (INVLPG) the next access
; sets them again; a write that faults (read-only page, CR0.WP = 1) leaves D clear; an
; access that faults on a not-present PTE sets nothing in it. 4 MiB page: A and D in the
; PDE itself. 4-level paging: a read sets A at every level (PML4E, PDPTE, PDE, PTE), a write
; sets D in the PTE only, and a 2 MiB page gets A and D in its PDE.

%include "lib.inc"

PD              equ SCRATCH             ; 32-bit paging
PT              equ SCRATCH + 0x1000
L4_PML4         equ SCRATCH + 0x2000    ; 4-level paging
L4_PDPT         equ SCRATCH + 0x3000
L4_PD0          equ SCRATCH + 0x4000
L4_PD1          equ SCRATCH + 0x5000
L4_PT           equ SCRATCH + 0x6000
VA              equ 0x40000000          ; 4 KiB test pages at VA, VA + 0x1000, VA + 0x2000
VA_LARGE        equ 0x40400000          ; a 4 MiB (2 MiB in 4-level) test page
FRAME           equ SCRATCH + 0x10000   ; frames of the 4 KiB test pages
FRAME_LARGE     equ 0xc00000            ; frame of the large page (4 MiB aligned)
AD              equ PTE_A | PTE_D

main:
        mov     edi, PD
        call    pd32_identity
        mov     edi, PT
        xor     eax, eax
        mov     ecx, 1024
        rep stosd
        mov     dword [PD + 4 * (VA >> 22)], PT | PTE_P | PTE_W
        mov     dword [PT + 0], FRAME | PTE_P | PTE_W
        mov     dword [PT + 4], (FRAME + 0x1000) | PTE_P  ; read-only
        mov     dword [PT + 8], 0                         ; not present
        mov     dword [PD + 4 * (VA_LARGE >> 22)], FRAME_LARGE | PTE_P | PTE_W | PTE_PS
        mov     eax, PD
        call    paging32_on

        mov     eax, [VA]
        mov     eax, [PD + 4 * (VA >> 22)]
        and     eax, AD
        CHECK   "32-bit read: pde.a", eax, PTE_A
        mov     eax, [PT]
        and     eax, AD
        CHECK   "32-bit read: pte.a, not d", eax, PTE_A
        mov     dword [VA + 4], 1
        mov     eax, [PT]
        and     eax, AD
        CHECK   "32-bit write: pte.d", eax, AD

        ; clear A/D, INVLPG: the next read sets A again, the next write D again
        and     dword [PT], ~AD
        invlpg  [VA]
        mov     eax, [VA]
        mov     eax, [PT]
        and     eax, AD
        CHECK   "32-bit read after invlpg: pte.a again", eax, PTE_A
        mov     byte [VA + 8], 2
        mov     eax, [PT]
        and     eax, AD
        CHECK   "32-bit write after invlpg: pte.d again", eax, AD

        ; a write fault leaves D clear
        mov     eax, cr0
        or      eax, CR0_WP
        mov     cr0, eax
        ARM_RESUME .wf_done
        mov     dword [VA + 0x1000], 1
.wf_done:
        VERIFY  "32-bit write to read-only faults", M_VEC | M_ERR, 14, ERR_PW
        mov     eax, [PT + 4]
        and     eax, PTE_D
        CHECK   "32-bit faulting write: pte.d clear", eax, 0
        ; a not-present PTE is left alone
        ARM_RESUME .np_done
        mov     eax, [VA + 0x2000]
.np_done:
        VERIFY  "32-bit not-present read faults", M_VEC | M_ERR, 14, 0
        CHECK   "32-bit not-present pte untouched", dword [PT + 8], 0

        ; 4 MiB page: A and D in the PDE
        mov     eax, [VA_LARGE + 0x1234]
        mov     eax, [PD + 4 * (VA_LARGE >> 22)]
        and     eax, AD
        CHECK   "32-bit 4 MiB read: pde.a, not d", eax, PTE_A
        mov     dword [VA_LARGE + 0x3ffffc], 1
        mov     eax, [PD + 4 * (VA_LARGE >> 22)]
        and     eax, AD
        CHECK   "32-bit 4 MiB write: pde.d", eax, AD
        call    paging32_off

        ; ---- 4-level ----
        mov     edi, L4_PML4
        xor     eax, eax
        mov     ecx, 5 * 1024
        rep stosd
        mov     dword [L4_PML4], L4_PDPT | PTE_P | PTE_W | PTE_U
        mov     dword [L4_PDPT], L4_PD0 | PTE_P | PTE_W | PTE_U
        mov     dword [L4_PDPT + 8], L4_PD1 | PTE_P | PTE_W
        mov     edi, L4_PD0             ; identity 0..16 MiB, 2 MiB pages
        mov     eax, PTE_P | PTE_W | PTE_U | PTE_PS
        call    pd64_identity_16m
        mov     dword [L4_PD1], L4_PT | PTE_P | PTE_W
        mov     dword [L4_PD1 + 8 * ((VA_LARGE >> 21) & 511)], FRAME_LARGE | PTE_P | PTE_W | PTE_PS
        mov     dword [L4_PT], FRAME | PTE_P | PTE_W
        mov     eax, long_tests
        mov     ebx, L4_PML4
        call    run_in_long
        ret

ERR_PW          equ 3                   ; #PF error code: present, write

        bits    64
long_tests:
        ; The walk of the code's own identity mapping already set A in PML4E[0] and
        ; PDPTE[0]; the test page hangs off PDPTE[1], which nothing has used yet.
        mov     rax, [abs L4_PDPT + 8]
        and     eax, AD
        CHECK   "4-level: unused pdpte has no a", rax, 0
        mov     rax, [abs VA]
        mov     rax, [abs L4_PML4]
        and     eax, PTE_A
        CHECK   "4-level read: pml4e.a", rax, PTE_A
        mov     rax, [abs L4_PDPT + 8]
        and     eax, AD
        CHECK   "4-level read: pdpte.a", rax, PTE_A
        mov     rax, [abs L4_PD1]
        and     eax, AD
        CHECK   "4-level read: pde.a", rax, PTE_A
        mov     rax, [abs L4_PT]
        and     eax, AD
        CHECK   "4-level read: pte.a, not d", rax, PTE_A
        mov     dword [abs VA + 16], 1
        mov     rax, [abs L4_PT]
        and     eax, AD
        CHECK   "4-level write: pte.d", rax, AD
        mov     rax, [abs L4_PD1]
        and     eax, PTE_D
        CHECK   "4-level write: pde (non-leaf) has no d", rax, 0
        mov     rax, [abs VA_LARGE + 0x100]
        mov     rax, [abs L4_PD1 + 8 * ((VA_LARGE >> 21) & 511)]
        and     eax, AD
        CHECK   "4-level 2 MiB read: pde.a, not d", rax, PTE_A
        mov     byte [abs VA_LARGE + 0x1fffff], 1
        mov     rax, [abs L4_PD1 + 8 * ((VA_LARGE >> 21) & 511)]
        and     eax, AD
        CHECK   "4-level 2 MiB write: pde.d", rax, AD
        ret
        bits    32

GUEST_END
