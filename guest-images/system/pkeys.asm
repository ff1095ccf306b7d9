; pkeys: protection keys (SDM Vol. 3 4.6.2), under 4-level paging in long mode.
; - CPUID.7.0:ECX: PKU and PKS advertised, OSPKE following CR4.PKE;
; - RDPKRU/WRPKRU: #UD without CR4.PKE, #GP(0) for ECX != 0 (and EDX != 0 for WRPKRU),
;   the upper halves of RAX/RCX ignored, EDX = 0 after RDPKRU;
; - PKRU on a user page with key 1: access-disable faults every data access (user and
;   supervisor, whatever CR0.WP), write-disable faults user writes and supervisor writes
;   with CR0.WP = 1; #PF error code bit 5 (PK) with P, W/R and U/S; instruction fetches are
;   never checked; keys of other pages and other keys' bits change nothing; PK is set even
;   when R/W refuses the write too; CR4.PKE = 0 turns PKRU off;
; - IA32_PKRS (MSR 0x6E1) on a supervisor page with key 2 under CR4.PKS, the same rules for
;   supervisor accesses; a user access to that page faults on U/S alone (no PK);
; - every check that follows a change of PKRU or PKRS (WRPKRU, XRSTOR, WRMSR) first makes
;   the same access succeed, so a translation cached before the change must not be used
;   after it (CR4 changes are followed by a CR3 reload, see cr4_set);
; - XSAVE state component 9: CPUID leaf 0xD sizes, XSAVE writes PKRU at 0xA80, XRSTOR loads
;   it (also with XSTATE_BV[9] = 0: PKRU = 0), RFBM without bit 9 leaves it alone.

%include "lib.inc"

L4_PML4         equ SCRATCH + 0x0000    ; PML4, PDPT, PD of GiB 0 (identity), PD of GiB 1, PT
L4_PDPT         equ SCRATCH + 0x1000
L4_PD0          equ SCRATCH + 0x2000
L4_PD1          equ SCRATCH + 0x3000
L4_PT           equ SCRATCH + 0x4000
FRAME_U         equ SCRATCH + 0x10000   ; the frame behind TEST_U and TEST_RO
FRAME_S         equ SCRATCH + 0x11000   ; the frame behind TEST_S
XBUF            equ SCRATCH + 0x20000   ; the XSAVE area (64-byte aligned)
TEST_U          equ 0x40000000          ; user page, writable, key 1
TEST_S          equ 0x40001000          ; supervisor page, writable, key 2
TEST_RO         equ 0x40002000          ; user page, read-only, key 1 (FRAME_U again)
DATA_OFF        equ 8                   ; data accesses go here; offset 0 holds INT 0x30
KEY1            equ 1 << (59 - 32)      ; key 1 in the high dword of an entry
KEY2            equ 2 << (59 - 32)
OK              equ 0x30                ; "the access went through" (the snippet's INT 0x30)
CR4_OSXSAVE     equ 1 << 18
CR4_PKE         equ 1 << 22
CR4_PKS         equ 1 << 24
MSR_PKRS        equ 0x6e1
AD1             equ 1 << 2              ; PKRU/PKRS rights of key 1 and key 2
WD1             equ 1 << 3
AD2             equ 1 << 4
WD2             equ 1 << 5

main:
        call    enable_tss
        mov     edi, SCRATCH            ; zero the tables and the frames
        mov     ecx, 0x30000 / 4
        xor     eax, eax
        cld
        rep stosd
        mov     word [FRAME_U], 0x30cd  ; INT 0x30 at offset 0 of both frames
        mov     word [FRAME_S], 0x30cd
        mov     edi, L4_PD0             ; GiB 0: identity, 2 MiB user pages, key 0
        mov     eax, PTE_P | PTE_W | PTE_U | PTE_PS
        mov     ecx, 512
.pde:   mov     [edi], eax
        add     eax, 0x200000
        add     edi, 8
        loop    .pde
        mov     dword [L4_PML4], L4_PDPT | PTE_P | PTE_W | PTE_U
        mov     dword [L4_PDPT], L4_PD0 | PTE_P | PTE_W | PTE_U
        mov     dword [L4_PDPT + 8], L4_PD1 | PTE_P | PTE_W | PTE_U
        ; Key bits in an upper level mean nothing: key 1 here, checked below.
        mov     dword [L4_PD1], L4_PT | PTE_P | PTE_W | PTE_U
        mov     dword [L4_PD1 + 4], KEY1
        mov     dword [L4_PT], FRAME_U | PTE_P | PTE_W | PTE_U | PTE_A | PTE_D
        mov     dword [L4_PT + 4], KEY1
        mov     dword [L4_PT + 8], FRAME_S | PTE_P | PTE_W | PTE_A | PTE_D
        mov     dword [L4_PT + 12], KEY2
        mov     dword [L4_PT + 16], FRAME_U | PTE_P | PTE_U | PTE_A | PTE_D
        mov     dword [L4_PT + 20], KEY1
        mov     eax, tests64
        mov     ebx, L4_PML4
        call    run_in_long
        mov     eax, cr4                ; leave as we came
        and     eax, ~(CR4_PKE | CR4_PKS | CR4_OSXSAVE)
        mov     cr4, eax
        mov     eax, cr0
        and     eax, ~CR0_WP
        mov     cr0, eax
        ret

        bits    64

; SETPKRU value: WRPKRU with ECX = EDX = 0.
%macro SETPKRU 1
        mov     eax, %1
        xor     ecx, ecx
        xor     edx, edx
        wrpkru
%endmacro

; SETPKRS value: WRMSR to IA32_PKRS.
%macro SETPKRS 1
        mov     eax, %1
        mov     ecx, MSR_PKRS
        xor     edx, edx
        wrmsr
%endmacro

; CASE "name", snippet, user (0/1), want: runs the snippet (at CPL 3 when user = 1) and
; checks the outcome: OK, a #PF error code (with CR2 at the snippet's address), or
; 0xbad000VV for another vector VV.
%macro CASE 4
        mov     esi, %2
        mov     ebx, %3
        mov     rdi, [rel %2_cr2]
        call    try64
        CHECK   %1, rax, %4
%endmacro

; EXPECT "name", vector, error code, instruction: the instruction raises that exception.
%macro EXPECT 4+
        ARM_RESUME %%caught
        %4
        DISARM
        FAIL    %1, "no exception"
        jmp     %%done
%%caught:
        VERIFY  %1, M_VEC | M_ERR, %2, %3
%%done:
%endmacro

; set_wp: CR0.WP = AL.
set_wp:
        push    rax
        push    rcx
        mov     rcx, cr0
        and     ecx, ~CR0_WP
        test    al, al
        jz      .set
        or      ecx, CR0_WP
.set:   mov     cr0, rcx
        pop     rcx
        pop     rax
        ret

; cr4_set / cr4_clear: CR4 |= EAX / CR4 &= ~EAX, then a CR3 reload. The SDM does not list
; CR4.PKE or CR4.PKS among the bits whose change invalidates the TLB, and QEMU 7.2 keeps
; translations cached before such a change (with the rights of before), so the guest
; flushes, as kvm-unit-tests' pku and pks do.
cr4_set:
        push    rcx
        mov     rcx, cr4
        or      rcx, rax
        mov     cr4, rcx
        mov     rcx, cr3
        mov     cr3, rcx
        pop     rcx
        ret
cr4_clear:
        push    rcx
        not     rax
        mov     rcx, cr4
        and     rcx, rax
        mov     cr4, rcx
        not     rax
        mov     rcx, cr3
        mov     cr3, rcx
        pop     rcx
        ret

; try64: runs the snippet at RSI (at CPL 3 when EBX = 1), expecting CR2 = RDI if it page
; faults. EAX = OK, the #PF error code, 0xbadc2000 for a wrong CR2, or 0xbad00000 | vector.
try64:
        push    rbx
        push    rdi
        ARM_RESUME .after
        test    ebx, ebx
        jnz     .user
        jmp     rsi
.user:  mov     rax, rsi
        mov     ecx, USER_STACK_TOP
        mov     edx, FL_FIXED
        jmp     to_ring3_64
.after: pop     rdi
        pop     rbx
        mov     rax, [rel exc_frame + 8*F_VEC]
        cmp     eax, OK
        je      .ok
        cmp     eax, 14
        jne     .weird
        mov     rax, cr2
        cmp     rax, rdi
        jne     .bad_cr2
        mov     rax, [rel exc_frame + 8*F_ERR]
        ret
.ok:    mov     eax, OK
        ret
.bad_cr2:
        mov     eax, 0xbadc2000
        ret
.weird: or      eax, 0xbad00000
        ret

tests64:
        ; ---- CPUID and the instructions without CR4.PKE ----
        mov     eax, 7
        xor     ecx, ecx
        cpuid
        mov     eax, ecx
        and     eax, 0x18
        CHECK   "cpuid.7 pku set, ospke clear", rax, 0x08
        shr     ecx, 31
        CHECK   "cpuid.7 pks", rcx, 1
        xor     ecx, ecx
        EXPECT  "rdpkru without cr4.pke: #ud", 6, 0, rdpkru
        xor     eax, eax
        xor     ecx, ecx
        xor     edx, edx
        EXPECT  "wrpkru without cr4.pke: #ud", 6, 0, wrpkru

        mov     eax, CR4_PKE
        call    cr4_set
        mov     eax, 7
        xor     ecx, ecx
        cpuid
        mov     eax, ecx
        and     eax, 0x18
        CHECK   "cpuid.7 ospke follows cr4.pke", rax, 0x18

        ; ---- RDPKRU/WRPKRU ----
        mov     ecx, 1
        EXPECT  "rdpkru ecx=1: #gp(0)", 13, 0, rdpkru
        xor     eax, eax
        mov     ecx, 1
        xor     edx, edx
        EXPECT  "wrpkru ecx=1: #gp(0)", 13, 0, wrpkru
        xor     eax, eax
        xor     ecx, ecx
        mov     edx, 1
        EXPECT  "wrpkru edx=1: #gp(0)", 13, 0, wrpkru
        mov     rax, 0xdead0000_5555aaa0 ; the upper half of RAX is ignored,
        mov     rcx, 0xffffffff_00000000 ; and so is RCX's
        xor     edx, edx
        wrpkru
        mov     rdx, -1
        xor     ecx, ecx
        rdpkru
        CHECK   "rdpkru reads back eax", rax, 0x5555aaa0
        CHECK   "rdpkru clears edx", rdx, 0

        ; ---- PKRU on user pages ----
        SETPKRU 0
        mov     al, 1
        call    set_wp
        CASE    "pkru 0: user read", rd_u, 1, OK
        CASE    "pkru 0: user write", wr_u, 1, OK
        SETPKRU AD1
        CASE    "pkru ad: user read", rd_u, 1, 0x25
        CASE    "pkru ad: user write", wr_u, 1, 0x27
        CASE    "pkru ad: supervisor read", rd_u, 0, 0x21
        CASE    "pkru ad: supervisor write wp=1", wr_u, 0, 0x23
        mov     al, 0
        call    set_wp
        CASE    "pkru ad: supervisor write wp=0", wr_u, 0, 0x23
        CASE    "pkru ad: user fetch", fetch_u, 1, OK
        CASE    "pkru ad: supervisor fetch", fetch_u, 0, OK
        SETPKRU 0
        CASE    "pkru 0: supervisor write wp=0", wr_u, 0, OK
        SETPKRU WD1
        CASE    "pkru wd: supervisor write wp=0", wr_u, 0, OK
        CASE    "pkru wd: user read", rd_u, 1, OK
        CASE    "pkru wd: user write", wr_u, 1, 0x27
        CASE    "pkru wd: supervisor read", rd_u, 0, OK
        mov     al, 1
        call    set_wp
        CASE    "pkru wd: supervisor write wp=1", wr_u, 0, 0x23
        CASE    "pkru wd: user write to a read-only page", wr_ro, 1, 0x27
        SETPKRU 0
        CASE    "pkru 0: user write to a read-only page", wr_ro, 1, 0x07
        SETPKRU ~(AD1 | WD1) & ~3       ; every key but 0 (the guest's own pages) and 1
        CASE    "other keys: user write", wr_u, 1, OK
        CASE    "other keys: supervisor write", wr_u, 0, OK
        CASE    "pkru ignores supervisor pages", wr_s, 0, OK
        SETPKRU AD1
        mov     eax, CR4_PKE
        call    cr4_clear
        CASE    "cr4.pke=0: pkru ignored", rd_u, 1, OK
        mov     eax, CR4_PKE
        call    cr4_set
        CASE    "cr4.pke=1 again: pkru applies", rd_u, 1, 0x25
        xor     ecx, ecx
        rdpkru
        CHECK   "pkru kept across cr4.pke", rax, AD1

        ; ---- IA32_PKRS on supervisor pages ----
        SETPKRU 0
        SETPKRS AD2                     ; written without CR4.PKS: no effect yet
        mov     ecx, MSR_PKRS
        rdmsr
        CHECK   "rdmsr pkrs", rax, AD2
        CASE    "cr4.pks=0: pkrs ignored", wr_s, 0, OK
        mov     eax, CR4_PKS
        call    cr4_set
        CASE    "pkrs ad: supervisor read", rd_s, 0, 0x21
        CASE    "pkrs ad: supervisor write", wr_s, 0, 0x23
        CASE    "pkrs ad: supervisor fetch", fetch_s, 0, OK
        CASE    "pkrs ad: user read (u/s only)", rd_s, 1, 0x05
        SETPKRS 0
        CASE    "pkrs 0: supervisor write", wr_s, 0, OK
        SETPKRS WD2
        CASE    "pkrs wd: supervisor write wp=1", wr_s, 0, 0x23
        CASE    "pkrs wd: supervisor read", rd_s, 0, OK
        mov     al, 0
        call    set_wp
        CASE    "pkrs wd: supervisor write wp=0", wr_s, 0, OK
        mov     al, 1
        call    set_wp
        SETPKRS -1
        CASE    "pkrs ignores user pages", wr_u, 0, OK
        mov     eax, 0
        mov     ecx, MSR_PKRS
        mov     edx, 1
        EXPECT  "wrmsr pkrs bit 32: #gp(0)", 13, 0, wrmsr
        SETPKRS 0

        ; ---- XSAVE state component 9 ----
        mov     eax, CR4_OSXSAVE
        call    cr4_set
        mov     eax, 0xd
        mov     ecx, 9
        cpuid
        CHECK   "cpuid.d.9 size", rax, 8
        CHECK   "cpuid.d.9 offset", rbx, 0xa80
        mov     eax, 0x203              ; XCR0 = x87 | SSE | PKRU
        xor     ecx, ecx
        xor     edx, edx
        xsetbv
        mov     eax, 0xd
        xor     ecx, ecx
        cpuid
        CHECK   "cpuid.d.0 size for xcr0", rbx, 0xa88
        SETPKRU 0x55550000 | AD1
        mov     eax, -1
        mov     edx, -1
        xsave   [abs XBUF]
        mov     rax, [abs XBUF + 0xa80]
        CHECK   "xsave pkru", rax, 0x55550000 | AD1
        mov     eax, [abs XBUF + 512]
        and     eax, 0x203
        CHECK   "xsave xstate_bv", rax, 0x203
        SETPKRU 0
        CASE    "before xrstor: user read", rd_u, 1, OK
        mov     dword [abs XBUF + 0xa80], WD1
        mov     eax, -1
        mov     edx, -1
        xrstor  [abs XBUF]
        xor     ecx, ecx
        rdpkru
        CHECK   "xrstor loads pkru", rax, WD1
        CASE    "after xrstor: user write", wr_u, 1, 0x27
        mov     eax, 3                  ; RFBM without PKRU
        xor     edx, edx
        mov     dword [abs XBUF + 0xa80], 0
        xrstor  [abs XBUF]
        xor     ecx, ecx
        rdpkru
        CHECK   "xrstor without rfbm[9] keeps pkru", rax, WD1
        and     dword [abs XBUF + 512], ~0x200
        mov     dword [abs XBUF + 0xa80], AD1
        mov     eax, -1
        mov     edx, -1
        xrstor  [abs XBUF]
        xor     ecx, ecx
        rdpkru
        CHECK   "xrstor with xstate_bv[9]=0 inits pkru", rax, 0
        CASE    "after xrstor init: user write", wr_u, 1, OK
        mov     eax, 3
        xor     ecx, ecx
        xor     edx, edx
        xsetbv
        ret

; The snippets: one access, then INT 0x30 ("it went through"). They live in the identity
; mapped image (user pages with key 0), so ring 3 can run them; the fetches jump to the
; test page's INT 0x30. Each has the CR2 a #PF must report beside it.
rd_u:   mov     eax, [abs TEST_U + DATA_OFF]
        int     0x30
wr_u:   mov     dword [abs TEST_U + DATA_OFF], 1
        int     0x30
wr_ro:  mov     dword [abs TEST_RO + DATA_OFF], 1
        int     0x30
rd_s:   mov     eax, [abs TEST_S + DATA_OFF]
        int     0x30
wr_s:   mov     dword [abs TEST_S + DATA_OFF], 1
        int     0x30
fetch_u         equ TEST_U
fetch_s         equ TEST_S

        align   8
rd_u_cr2:       dq      TEST_U + DATA_OFF
wr_u_cr2:       dq      TEST_U + DATA_OFF
wr_ro_cr2:      dq      TEST_RO + DATA_OFF
rd_s_cr2:       dq      TEST_S + DATA_OFF
wr_s_cr2:       dq      TEST_S + DATA_OFF
fetch_u_cr2:    dq      TEST_U
fetch_s_cr2:    dq      TEST_S

        bits    32

GUEST_END
