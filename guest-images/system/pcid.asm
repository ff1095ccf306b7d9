; pcid: process-context identifiers and INVPCID (SDM Vol. 3 4.10.1 and 4.10.4, Vol. 2 MOV
; to CR3/CR4 and INVPCID), checking only what the SDM requires of the TLB:
; - CPUID advertises PCID (leaf 1 ECX bit 17) and INVPCID (leaf 7 EBX bit 10);
; - outside IA-32e mode: CR4.PCIDE cannot be set (#GP(0)); INVPCID works with PCID 0 and
;   faults (#GP(0)) on a type above 3, a PCID other than 0 for types 0 and 1, descriptor
;   bits 63:12, a non-canonical address for type 0, and at CPL 3;
; - in 64-bit mode: CR3 bit 63 is reserved without PCIDE; PCIDE cannot be set while
;   CR3[11:0] is not 0; with PCIDE, CR3[11:0] holds the PCID, bit 63 of MOV to CR3 is not
;   stored, bit 62 still faults, and clearing CR0.PG faults;
; - invalidation: after a PTE change, MOV to CR3 without bit 63 and INVPCID types 0 to 3
;   must give the new mapping; with bit 63 either mapping is allowed; a global page needs
;   type 2 (the others may keep it);
; - with PCIDE, a PCID other than 0 is fine for types 0 and 1; a descriptor in a page that
;   is not mapped is #PF; clearing PCIDE makes PCID 6 fault again.
; QEMU 7.2 TCG implements neither PCID nor INVPCID (not even with -cpu max,+pcid,+invpcid;
; it also lets CR4.PCIDE be set outside IA-32e mode), so every check runs only with
; `sdm-only` (crane86 alone, see sdm_requested in lib.inc); under QEMU the guest prints
; DONE and nothing else.

%include "lib.inc"

L4_PML4         equ SCRATCH
L4_PDPT         equ SCRATCH + 0x1000
L4_PD0          equ SCRATCH + 0x2000
L4_PD1          equ SCRATCH + 0x3000
L4_PT           equ SCRATCH + 0x4000
INV_DESC        equ SCRATCH + 0x5000    ; the 16-byte INVPCID descriptor
VA              equ 0x40000000          ; L4_PT[0]: not global
VA_G            equ 0x40001000          ; L4_PT[1]: global
VA_ABSENT       equ 0x40002000          ; L4_PT[2]: not present
FRAME1          equ SCRATCH + 0x10000
FRAME2          equ SCRATCH + 0x11000
FRAME3          equ SCRATCH + 0x12000
FRAME4          equ SCRATCH + 0x13000
CR4_PGE         equ 1 << 7
CR4_PCIDE       equ 1 << 17
CR3_NOFLUSH     equ 1 << 63

; SET_DESC64 pcid, linear: fills the descriptor (64-bit code; clobbers RAX).
%macro SET_DESC64 2
        mov     rax, %1
        mov     [abs INV_DESC], rax
        mov     rax, %2
        mov     [abs INV_DESC + 8], rax
%endmacro

; INVPCID_GP64 "name", type: INVPCID of that type with the current descriptor must be
; #GP(0) (64-bit code; clobbers RCX).
%macro INVPCID_GP64 2
        mov     rcx, %2
        ARM_RESUME %%done
        invpcid rcx, [abs INV_DESC]
%%done: VERIFY  %1, M_VEC | M_ERR, 13, 0
%endmacro

; INVPCID_GP32 "name", type: the same in 32-bit code.
%macro INVPCID_GP32 2
        mov     ecx, %2
        ARM_RESUME %%done
        invpcid ecx, [INV_DESC]
%%done: VERIFY  %1, M_VEC | M_ERR, 13, 0
%endmacro

; EITHER64 "name", address, old, new: PASS if the dword at the address is one of the two.
%macro EITHER64 4
        mov     eax, [abs %2]
        cmp     eax, %3
        je      %%ok
        cmp     eax, %4
%%ok:   sete    al
        movzx   eax, al
        CHECK   %1, rax, 1
%endmacro

main:
        call    sdm_requested
        test    eax, eax
        jnz     .sdm
        ret
.sdm:   call    enable_tss
        mov     eax, 1
        cpuid
        shr     ecx, 17
        and     ecx, 1
        CHECK   "cpuid.1:ecx.pcid", ecx, 1
        mov     eax, 7
        xor     ecx, ecx
        cpuid
        shr     ebx, 10
        and     ebx, 1
        CHECK   "cpuid.7:ebx.invpcid", ebx, 1

        ; ---- protected mode, EFER.LMA = 0 ----
        mov     eax, cr4
        or      eax, CR4_PCIDE
        ARM_RESUME .pm_pcide
        mov     cr4, eax
.pm_pcide:
        VERIFY  "pcide outside ia-32e mode: #gp", M_VEC | M_ERR, 13, 0
        mov     eax, cr4
        and     eax, CR4_PCIDE
        CHECK   "pcide still clear", eax, 0

        mov     edi, INV_DESC
        xor     eax, eax
        mov     ecx, 4
        rep stosd
        xor     ecx, ecx
.types: invpcid ecx, [INV_DESC]
        inc     ecx
        cmp     ecx, 4
        jb      .types
        PASS    "invpcid types 0-3 with pcid 0 in protected mode"
        INVPCID_GP32 "invpcid type 4: #gp", 4
        INVPCID_GP32 "invpcid type -1: #gp", -1
        mov     dword [INV_DESC], 1
        INVPCID_GP32 "invpcid type 0, pcid 1, no pcide: #gp", 0
        INVPCID_GP32 "invpcid type 1, pcid 1, no pcide: #gp", 1
        mov     ecx, 2
        invpcid ecx, [INV_DESC]
        mov     ecx, 3
        invpcid ecx, [INV_DESC]
        PASS    "invpcid types 2 and 3 ignore the pcid"
        mov     dword [INV_DESC], 0x1000
        INVPCID_GP32 "invpcid descriptor bit 12: #gp", 2
        mov     dword [INV_DESC], 0
        mov     dword [INV_DESC + 4], 0x80000000
        INVPCID_GP32 "invpcid descriptor bit 63: #gp", 3
        mov     dword [INV_DESC + 4], 0
        mov     dword [INV_DESC + 12], 0x00008000
        INVPCID_GP32 "invpcid type 0, address bit 47 only: #gp", 0
        mov     ecx, 1
        invpcid ecx, [INV_DESC]
        PASS    "invpcid type 1 ignores the address"
        mov     dword [INV_DESC + 12], 0xffff8000
        xor     ecx, ecx
        invpcid ecx, [INV_DESC]
        PASS    "invpcid type 0, canonical address above 4 GiB"
        mov     dword [INV_DESC + 12], 0

        ARM_RESUME .user_done
        mov     eax, .user
        mov     ecx, USER_STACK_TOP
        mov     edx, FL_FIXED
        jmp     to_ring3
.user:  mov     ecx, 2
.user_insn:
        invpcid ecx, [INV_DESC]
.user_done:
        VERIFY  "invpcid at cpl 3: #gp", M_VEC | M_ERR | M_EIP | M_CS, 13, 0, .user_insn, \
                SEL_UCODE32 | 3

        ; ---- 64-bit mode ----
        mov     edi, L4_PML4
        xor     eax, eax
        mov     ecx, 5 * 1024
        rep stosd
        mov     dword [L4_PML4], L4_PDPT | PTE_P | PTE_W
        mov     dword [L4_PDPT], L4_PD0 | PTE_P | PTE_W
        mov     dword [L4_PDPT + 8], L4_PD1 | PTE_P | PTE_W
        mov     edi, L4_PD0
        mov     eax, PTE_P | PTE_W | PTE_PS
        call    pd64_identity_16m
        mov     dword [L4_PD1], L4_PT | PTE_P | PTE_W
        mov     dword [L4_PT], FRAME1 | PTE_P | PTE_W
        mov     dword [L4_PT + 8], FRAME3 | PTE_P | PTE_W | PTE_G
        mov     dword [FRAME1], 0x11111111
        mov     dword [FRAME2], 0x22222222
        mov     dword [FRAME3], 0x33333333
        mov     dword [FRAME4], 0x44444444
        mov     eax, long_tests
        mov     ebx, L4_PML4
        call    run_in_long
        ret

        bits    64
long_tests:
        ; CR3 bit 63 is reserved while PCIDE = 0.
        mov     rax, CR3_NOFLUSH | L4_PML4
        ARM_RESUME .r63
        mov     cr3, rax
.r63:   VERIFY  "cr3 bit 63 without pcide: #gp", M_VEC | M_ERR, 13, 0
        ; PCIDE cannot be set while CR3[11:0] is not 0 (here PWT).
        mov     eax, L4_PML4 | 8
        mov     cr3, rax
        mov     rax, cr4
        or      eax, CR4_PCIDE
        ARM_RESUME .nz
        mov     cr4, rax
.nz:    VERIFY  "pcide with cr3[11:0] = 8: #gp", M_VEC | M_ERR, 13, 0
        mov     eax, L4_PML4
        mov     cr3, rax
        mov     rax, cr4
        or      eax, CR4_PCIDE | CR4_PGE
        mov     cr4, rax
        mov     rax, cr4
        shr     eax, 17
        and     eax, 1
        CHECK   "pcide set in ia-32e mode with cr3[11:0] = 0", rax, 1

        mov     eax, L4_PML4 | 5
        mov     cr3, rax
        mov     rax, cr3
        CHECK   "cr3[11:0] holds the pcid", rax, L4_PML4 | 5
        mov     rax, CR3_NOFLUSH | L4_PML4 | 6
        mov     cr3, rax
        mov     rax, cr3
        CHECK   "cr3 bit 63 is not stored", rax, L4_PML4 | 6
        mov     rax, (1 << 62) | L4_PML4 | 6
        ARM_RESUME .r62
        mov     cr3, rax
.r62:   VERIFY  "cr3 bit 62 with pcide: #gp", M_VEC | M_ERR, 13, 0
        mov     rax, cr0
        btr     eax, 31
        ARM_RESUME .pg
        mov     cr0, rax
.pg:    VERIFY  "clearing cr0.pg with pcide: #gp", M_VEC | M_ERR, 13, 0

        ; Invalidation in PCID 6.
        mov     eax, [abs VA]
        CHECK   "first mapping", rax, 0x11111111
        mov     dword [abs L4_PT], FRAME2 | PTE_P | PTE_W
        mov     eax, L4_PML4 | 6
        mov     cr3, rax
        mov     eax, [abs VA]
        CHECK   "remapped, mov cr3 without bit 63: new frame", rax, 0x22222222
        mov     dword [abs L4_PT], FRAME1 | PTE_P | PTE_W
        mov     rax, CR3_NOFLUSH | L4_PML4 | 6
        mov     cr3, rax
        EITHER64 "remapped, mov cr3 with bit 63: old or new frame", VA, 0x22222222, 0x11111111
        SET_DESC64 6, VA
        xor     ecx, ecx
        invpcid rcx, [abs INV_DESC]
        mov     eax, [abs VA]
        CHECK   "remapped, invpcid type 0: new frame", rax, 0x11111111
        mov     dword [abs L4_PT], FRAME2 | PTE_P | PTE_W
        SET_DESC64 6, 0
        mov     ecx, 1
        invpcid rcx, [abs INV_DESC]
        mov     eax, [abs VA]
        CHECK   "remapped, invpcid type 1: new frame", rax, 0x22222222
        mov     dword [abs L4_PT], FRAME1 | PTE_P | PTE_W
        mov     ecx, 3
        invpcid rcx, [abs INV_DESC]
        mov     eax, [abs VA]
        CHECK   "remapped, invpcid type 3: new frame", rax, 0x11111111

        ; A global page survives all but type 2 (and may not survive those).
        mov     eax, [abs VA_G]
        CHECK   "global page", rax, 0x33333333
        mov     dword [abs L4_PT + 8], FRAME4 | PTE_P | PTE_W | PTE_G
        mov     ecx, 3
        invpcid rcx, [abs INV_DESC]
        EITHER64 "global remapped, invpcid type 3: old or new", VA_G, 0x33333333, 0x44444444
        mov     ecx, 1
        invpcid rcx, [abs INV_DESC]
        EITHER64 "global remapped, invpcid type 1: old or new", VA_G, 0x33333333, 0x44444444
        mov     ecx, 2
        invpcid rcx, [abs INV_DESC]
        mov     eax, [abs VA_G]
        CHECK   "global remapped, invpcid type 2: new frame", rax, 0x44444444

        ; Faults with PCIDE = 1; PCIDs other than 0 are fine now.
        SET_DESC64 0xfff, VA
        xor     ecx, ecx
        invpcid rcx, [abs INV_DESC]
        mov     ecx, 1
        invpcid rcx, [abs INV_DESC]
        PASS    "invpcid types 0 and 1 with pcid 0xfff under pcide"
        INVPCID_GP64 "64-bit: invpcid type 4: #gp", 4
        INVPCID_GP64 "64-bit: invpcid type 2 + 2^32: #gp", (1 << 32) | 2
        SET_DESC64 0x1006, VA
        INVPCID_GP64 "64-bit: invpcid descriptor bit 12: #gp", 1
        SET_DESC64 6, 0x0000800000000000
        INVPCID_GP64 "64-bit: invpcid type 0, non-canonical: #gp", 0
        SET_DESC64 6, 0
        mov     ecx, 1
        ARM_RESUME .pf
        invpcid rcx, [abs VA_ABSENT]
.pf:    VERIFY  "invpcid descriptor not mapped: #pf", M_VEC | M_ERR, 14, 0
        mov     rax, cr2
        CHECK   "invpcid #pf: cr2", rax, VA_ABSENT

        ; Clearing PCIDE (allowed with any CR3[11:0]): PCID 6 faults again.
        mov     rax, cr4
        and     eax, ~(CR4_PCIDE | CR4_PGE)
        mov     cr4, rax
        mov     rax, cr4
        and     eax, CR4_PCIDE
        CHECK   "pcide cleared", rax, 0
        INVPCID_GP64 "pcide cleared: invpcid type 1, pcid 6: #gp", 1
        mov     eax, L4_PML4
        mov     cr3, rax
        ret
        bits    32

GUEST_END
