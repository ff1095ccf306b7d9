; paging: access rights under 32-bit paging, PAE paging and 4-level paging. One test page
; is mapped with every combination of its PTE's U/S, R/W and XD (NX, with EFER.NXE on; not
; in 32-bit paging) bits, under CR0.WP = 0 and 1, plus a page table entry above it that
; removes U/S or R/W; each case tries six accesses (supervisor and user read, write and
; instruction fetch) and compares which fault, with which #PF error code and CR2, against
; the SDM's rules:
; - supervisor read: always allowed (SMAP is off);
; - supervisor write to a read-only page: faults only when CR0.WP = 1;
; - user access to a supervisor page, user write to a read-only page: fault;
; - fetch from an XD page: faults (supervisor or user; SMEP is off so supervisor fetches
;   from user pages are allowed);
; - error code: P (the page is present) | W/R | U/S | I/D, where I/D is set for fetches
;   only when EFER.NXE = 1 (it is never set under 32-bit paging without SMEP);
; - U/S and R/W of every level combine (all levels must allow the access).
; One line per case: `PASS <paging> wp<0|1> u<0|1> w<0|1> nx<0|1> [pde u0|pde w0]`.

%include "lib.inc"

TEST_VA         equ 0x40000000          ; the page under test (1 GiB: its own tables)
TEST_PHYS       equ SCRATCH + 0x10000   ; its frame: INT 0x30 at offset 0, data at 8
DATA_OFF        equ 8
PG32_PD         equ SCRATCH + 0x0000    ; 32-bit paging: PD (4 MiB identity pages), PT
PG32_PT         equ SCRATCH + 0x1000
PAE_PDPT        equ SCRATCH + 0x2000    ; PAE: PDPT, PD of GiB 0 (identity), PD of GiB 1, PT
PAE_PD0         equ SCRATCH + 0x3000
PAE_PD1         equ SCRATCH + 0x4000
PAE_PT          equ SCRATCH + 0x5000
L4_PML4         equ SCRATCH + 0x6000    ; 4-level: PML4, PDPT, PD of GiB 0, PD of GiB 1, PT
L4_PDPT         equ SCRATCH + 0x7000
L4_PD0          equ SCRATCH + 0x8000
L4_PD1          equ SCRATCH + 0x9000
L4_PT           equ SCRATCH + 0xa000
IDENTITY_MIB    equ 16                  ; identity-mapped with user, writable pages
OK              equ 0xffffffff          ; "no fault" in the outcome tables
ERR_P           equ 1
ERR_W           equ 2
ERR_U           equ 4
ERR_I           equ 0x10

main:
        call    enable_tss
        mov     byte [TEST_PHYS], 0xcd  ; INT 0x30: "the access worked" for fetches
        mov     byte [TEST_PHYS + 1], 0x30
        ; zero every table
        mov     edi, SCRATCH
        mov     ecx, 0xb000 / 4
        xor     eax, eax
        cld
        rep stosd

        ; ---- 32-bit paging ----
        mov     edi, PG32_PD            ; 4 MiB identity pages (CR4.PSE)
        mov     eax, PTE_P | PTE_W | PTE_U | PTE_PS
        mov     ecx, IDENTITY_MIB / 4
.pd32:  stosd
        add     eax, 0x400000
        loop    .pd32
        mov     dword [PG32_PD + 4 * (TEST_VA >> 22)], PG32_PT | PTE_P | PTE_W | PTE_U
        mov     dword [mode_name], name32
        mov     dword [pte_addr], PG32_PT
        mov     dword [pde_addr], PG32_PD + 4 * (TEST_VA >> 22)
        mov     byte [nxe], 0
        mov     eax, cr4
        or      eax, CR4_PSE
        mov     cr4, eax
        mov     eax, PG32_PD
        mov     cr3, eax
        mov     eax, cr0
        or      eax, CR0_PG
        mov     cr0, eax
        call    all_cases32
        call    paging_off

        ; ---- PAE paging ----
        mov     edi, PAE_PD0            ; 2 MiB identity pages
        mov     eax, PTE_P | PTE_W | PTE_U | PTE_PS
        mov     ecx, IDENTITY_MIB / 2
.pdpae: mov     [edi], eax
        add     eax, 0x200000
        add     edi, 8
        loop    .pdpae
        mov     dword [PAE_PDPT], PAE_PD0 | PTE_P     ; PDPTEs have no U/S, R/W
        mov     dword [PAE_PDPT + 8], PAE_PD1 | PTE_P
        mov     dword [PAE_PD1], PAE_PT | PTE_P | PTE_W | PTE_U
        mov     dword [mode_name], name_pae
        mov     dword [pte_addr], PAE_PT
        mov     dword [pde_addr], PAE_PD1
        mov     byte [nxe], 1
        call    nxe_on
        mov     eax, cr4
        or      eax, CR4_PAE
        mov     cr4, eax
        mov     eax, PAE_PDPT
        mov     cr3, eax
        mov     eax, cr0
        or      eax, CR0_PG
        mov     cr0, eax
        call    all_cases32
        call    paging_off

        ; ---- 4-level paging (long mode) ----
        mov     esi, PAE_PD0            ; the same identity PD
        mov     edi, L4_PD0
        mov     ecx, 1024
        rep movsd
        mov     dword [L4_PML4], L4_PDPT | PTE_P | PTE_W | PTE_U
        mov     dword [L4_PDPT], L4_PD0 | PTE_P | PTE_W | PTE_U
        mov     dword [L4_PDPT + 8], L4_PD1 | PTE_P | PTE_W | PTE_U
        mov     dword [L4_PD1], L4_PT | PTE_P | PTE_W | PTE_U
        mov     dword [mode_name], name_l4
        mov     dword [pte_addr], L4_PT
        mov     dword [pde_addr], L4_PD1
        call    nxe_on                  ; run_in_long keeps EFER's other bits
        mov     eax, all_cases64
        mov     ebx, L4_PML4
        call    run_in_long
        call    nxe_off
        ret

; paging_off: CR0.PG, CR0.WP, CR4.PSE/PAE and EFER.NXE off.
paging_off:
        mov     eax, cr0
        and     eax, ~(CR0_PG | CR0_WP)
        mov     cr0, eax
        mov     eax, cr4
        and     eax, ~(CR4_PSE | CR4_PAE)
        mov     cr4, eax
        ; fall through
nxe_off:
        mov     ecx, MSR_EFER
        rdmsr
        and     eax, ~EFER_NXE
        wrmsr
        ret
nxe_on:
        mov     ecx, MSR_EFER
        rdmsr
        or      eax, EFER_NXE
        wrmsr
        ret

; ---- the case driver, assembled once as 32-bit and once as 64-bit code ----
;
; all_casesNN: every (wp, u, w, nx) combination with a permissive PDE, then the two PDE
; restrictions; mode_name, pte_addr, pde_addr and nxe say which paging is on.
; The six accesses run a snippet at ring 0 (by JMP) or ring 3 (by IRET): the snippet does
; the access and then INT 0x30, so exception vector 0x30 means "allowed" and 14 a fault.
; The register names rAX..rDI are EAX..EDI in the 32-bit copy and RAX..RDI in the 64-bit
; one; memory operands are absolute addresses (everything is below 2 GiB).
%macro DRIVER 1 ; 32 or 64
%if %1 == 64
  %define rAX rax
  %define rBX rbx
  %define rCX rcx
  %define rDX rdx
  %define rSI rsi
  %define rDI rdi
%else
  %define rAX eax
  %define rBX ebx
  %define rCX ecx
  %define rDX edx
  %define rSI esi
  %define rDI edi
%endif
all_cases%1:
        mov     byte [wp], 0
%%wp:   mov     byte [u], 0
%%u:    mov     byte [w], 0
%%w:    mov     byte [nx], 0
%%nx:   mov     byte [pde_u], 1
        mov     byte [pde_w], 1
        call    one_case%1
        inc     byte [nx]
        mov     al, [nxe]
        cmp     [nx], al
        jbe     %%nx
        inc     byte [w]
        cmp     byte [w], 1
        jbe     %%w
        inc     byte [u]
        cmp     byte [u], 1
        jbe     %%u
        inc     byte [wp]
        cmp     byte [wp], 1
        jbe     %%wp
        ; a permissive PTE under a PDE without U/S, then without R/W (CR0.WP = 1)
        mov     byte [u], 1
        mov     byte [w], 1
        mov     byte [nx], 0
        mov     byte [wp], 1
        mov     byte [pde_u], 0
        call    one_case%1
        mov     byte [pde_u], 1
        mov     byte [pde_w], 0
        call    one_case%1
        ret

one_case%1:
        ; the PTE and the PDE above it
        mov     edi, [pte_addr]
        mov     eax, TEST_PHYS | PTE_P
        cmp     byte [u], 0
        je      %%nou
        or      eax, PTE_U
%%nou:  cmp     byte [w], 0
        je      %%now
        or      eax, PTE_W
%%now:  mov     [rDI], eax
        cmp     byte [nxe], 0
        je      %%nonx
        movzx   eax, byte [nx]
        shl     eax, 31                 ; XD is bit 63: bit 31 of the high dword
        mov     [rDI + 4], eax
%%nonx: mov     edi, [pde_addr]
        and     dword [rDI], ~(PTE_U | PTE_W)
        cmp     byte [pde_u], 0
        je      %%pdu
        or      dword [rDI], PTE_U
%%pdu:  cmp     byte [pde_w], 0
        je      %%pdw
        or      dword [rDI], PTE_W
%%pdw:  mov     rAX, cr0
        and     eax, ~CR0_WP
        cmp     byte [wp], 0
        je      %%wp0
        or      eax, CR0_WP
%%wp0:  mov     cr0, rAX
        mov     rAX, cr3                ; flush the TLB: the entries just changed
        mov     cr3, rAX

        mov     byte [case_failed], 0
        xor     ebx, ebx
%%access:
        call    try_access%1            ; EAX = error code or OK
        mov     edx, eax
        call    expected_err%1          ; EAX = what the SDM says
        cmp     eax, edx
        je      %%next
        cmp     byte [case_failed], 0
        jne     %%next
        mov     byte [case_failed], 1
        mov     [bad_access], ebx
        mov     [bad_got], edx
        mov     [bad_want], eax
%%next: inc     ebx
        cmp     ebx, 6
        jb      %%access

        cmp     byte [case_failed], 0
        jne     %%fail
        PRINT   "PASS "
        call    case_name%1
        PRINT   `\n`
        ret
%%fail: inc     dword [fail_count]
        PRINT   "FAIL "
        call    case_name%1
        PRINT   ": "
        mov     ebx, [bad_access]
        mov     esi, [access_names + 4*rBX]
        call    put_str%1
        PRINT   " got "
        mov     eax, [bad_got]
        call    put_hex32_%1
        PRINT   " want "
        mov     eax, [bad_want]
        call    put_hex32_%1
        PRINT   `\n`
        ret

; try_accessNN: performs access EBX (see access_names); EAX = the #PF error code, OK if no
; fault, or 0xbad00000 | vector for anything else (or a wrong CR2).
try_access%1:
        push    rBX
        mov     esi, [access_snippets%1 + 4*rBX]
        ARM_RESUME %%after
        cmp     ebx, 3
        jae     %%user
        jmp     rSI
%%user: mov     eax, esi
        mov     ecx, USER_STACK_TOP
        mov     edx, FL_FIXED
        jmp     to_ring3_%1
%%after:
        pop     rBX
        mov     eax, [exc_frame + F_VEC * (%1 / 8)]
        cmp     eax, 0x30
        je      %%ok
        cmp     eax, 14
        jne     %%weird
        mov     rAX, cr2
        mov     ecx, TEST_VA
        cmp     ebx, 2
        je      %%fetch
        cmp     ebx, 5
        je      %%fetch
        add     ecx, DATA_OFF
%%fetch:
        cmp     eax, ecx
        jne     %%weird
        mov     eax, [exc_frame + F_ERR * (%1 / 8)]
        ret
%%ok:   mov     eax, OK
        ret
%%weird:
        mov     eax, [exc_frame + F_VEC * (%1 / 8)]
        or      eax, 0xbad00000
        ret

; case_nameNN: prints "<paging> wpN uN wN nxN[ pde u0| pde w0]".
case_name%1:
        mov     esi, [mode_name]
        call    put_str%1
        PRINT   " wp"
        mov     al, [wp]
        call    put_digit%1
        PRINT   " u"
        mov     al, [u]
        call    put_digit%1
        PRINT   " w"
        mov     al, [w]
        call    put_digit%1
        PRINT   " nx"
        mov     al, [nx]
        call    put_digit%1
        cmp     byte [pde_u], 0
        jne     %%pu
        PRINT   " pde u0"
%%pu:   cmp     byte [pde_w], 0
        jne     %%pw
        PRINT   " pde w0"
%%pw:   ret

put_digit%1:
        push    rAX
        add     al, '0'
        call    put_char%1
        pop     rAX
        ret

; expected_errNN: the SDM's outcome of access EBX in the current case (EAX = error code or
; OK).
expected_err%1:
        push    rCX
        push    rDX
        mov     cl, [u]
        and     cl, [pde_u]             ; effective U/S: every level must allow
        mov     dl, [w]
        and     dl, [pde_w]             ; effective R/W
        mov     eax, OK
        cmp     ebx, 1
        je      %%sw
        cmp     ebx, 2
        je      %%sf
        cmp     ebx, 3
        je      %%ur
        cmp     ebx, 4
        je      %%uw
        cmp     ebx, 5
        je      %%uf
        jmp     %%done                  ; supervisor read: always allowed
%%sw:   test    dl, dl                  ; supervisor write: read-only matters with WP
        jnz     %%done
        cmp     byte [wp], 0
        je      %%done
        mov     eax, ERR_P | ERR_W
        jmp     %%done
%%sf:   cmp     byte [nx], 0            ; supervisor fetch: XD only (no SMEP)
        je      %%done
        mov     eax, ERR_P | ERR_I
        jmp     %%done
%%ur:   test    cl, cl                  ; user read: U/S
        jnz     %%done
        mov     eax, ERR_P | ERR_U
        jmp     %%done
%%uw:   test    cl, cl                  ; user write: U/S and R/W whatever WP says
        jz      %%uwf
        test    dl, dl
        jnz     %%done
%%uwf:  mov     eax, ERR_P | ERR_W | ERR_U
        jmp     %%done
%%uf:   test    cl, cl                  ; user fetch: U/S and XD
        jz      %%uff
        cmp     byte [nx], 0
        je      %%done
%%uff:  mov     eax, ERR_P | ERR_U
        cmp     byte [nxe], 0           ; I/D is reported only with EFER.NXE
        je      %%done
        or      eax, ERR_I
%%done: pop     rDX
        pop     rCX
        ret
%undef rAX
%undef rBX
%undef rCX
%undef rDX
%undef rSI
%undef rDI
%endmacro

; Names the 32-bit copy of the driver calls.
put_str32       equ put_str
put_char32      equ put_char
put_hex32_32    equ put_hex32
to_ring3_32     equ to_ring3

        bits    32
        DRIVER  32

        bits    64
; put_hex32_64: EAX as 8 hex digits, from 64-bit code.
put_hex32_64:
        push    rax
        shl     rax, 32
        mov     ecx, 8
.digit: rol     rax, 4
        push    rax
        and     eax, 0xf
        lea     rdx, [rel hex_digits]
        mov     al, [rdx + rax]
        call    put_char64
        pop     rax
        dec     ecx
        jnz     .digit
        pop     rax
        ret
        DRIVER  64
        bits    32

; The access snippets: the access, then INT 0x30 to report that it went through. They live
; in the identity-mapped image (user, writable) so ring 3 can run them; fetches jump to the
; test page, whose first instruction is INT 0x30.
read_snippet32:
        mov     eax, [TEST_VA + DATA_OFF]
        int     0x30
write_snippet32:
        mov     dword [TEST_VA + DATA_OFF], 1
        int     0x30
        bits    64
read_snippet64:
        mov     eax, [abs TEST_VA + DATA_OFF]
        int     0x30
write_snippet64:
        mov     dword [abs TEST_VA + DATA_OFF], 1
        int     0x30
        bits    32

; Access number -> the code that performs it: supervisor read, write, fetch, then the same
; from user mode.
access_snippets32:
        dd      read_snippet32, write_snippet32, TEST_VA
        dd      read_snippet32, write_snippet32, TEST_VA
access_snippets64:
        dd      read_snippet64, write_snippet64, TEST_VA
        dd      read_snippet64, write_snippet64, TEST_VA

; Access number -> name.
access_names:   dd      .sr, .sw, .sf, .ur, .uw, .uf
.sr:    db      "supervisor read", 0
.sw:    db      "supervisor write", 0
.sf:    db      "supervisor fetch", 0
.ur:    db      "user read", 0
.uw:    db      "user write", 0
.uf:    db      "user fetch", 0

name32:         db      "32-bit", 0
name_pae:       db      "pae", 0
name_l4:        db      "4-level", 0

        align   4
mode_name:      dd      0
pte_addr:       dd      0
pde_addr:       dd      0
bad_access:     dd      0
bad_got:        dd      0
bad_want:       dd      0
nxe:            db      0
wp:             db      0
u:              db      0
w:              db      0
nx:             db      0
pde_u:          db      0
pde_w:          db      0
case_failed:    db      0

GUEST_END
