; seglimit: segment limit and type checks on data accesses (SDM Vol. 3, 5.3 "Limit
; checking" and 5.5 "Type checking") in 32- and 16-bit protected mode.
; Checked with QEMU as the referee: accesses inside the limits of small, read-only and
; expand-down segments work and add the base; PUSH/POP on an expand-down stack above its
; limit; a read through a readable CS override.
; QEMU 7.2 TCG checks no data segment limits or types, so the faults run only with
; `sdm-only` on the multiboot command line (crane86 alone), each checking the vector,
; error code 0, the faulting EIP and CS, and that a faulting store wrote nothing:
; - an access whose last byte is beyond an expand-up limit (#GP(0); #SS(0) through SS);
; - an expand-down segment: offsets at or below the limit, and beyond 0xFFFF when B = 0;
; - a store to a read-only data segment (also read-modify-write), through a CS override,
;   a load through an execute-only CS, any access through a null DS or FS.
; Stack pushes that fault are left to the translator's unit tests: the exception frame
; would go onto the same faulting stack.

%include "lib.inc"

SEL_SMALL       equ SEL_FREE            ; data, base SCRATCH, limit 0xFFF, writable, B = 1
SEL_RO          equ SEL_FREE + 0x08     ; data, base SCRATCH, limit 0xFFFF, read-only
SEL_DOWN        equ SEL_FREE + 0x10     ; data, base 0, limit 0xFFF, expand-down, B = 1
SEL_XO          equ SEL_FREE + 0x18     ; code, base 0, 4 GiB, execute-only, 32-bit
SEL_C16         equ SEL_FREE + 0x20     ; code, base LOAD_ADDR, limit 0xFFFF, 16-bit
SEL_DOWN16      equ SEL_FREE + 0x28     ; data, base SCRATCH, limit 0xFFF, expand-down, B = 0
SEL_D16         equ SEL_FREE + 0x30     ; data, base SCRATCH, limit 0xFFFF, 16-bit

M_AT            equ M_VEC | M_ERR | M_EIP | M_CS

; FLAT_SEGS: DS, ES, FS, GS and SS back to the flat data segment (DX is clobbered).
%macro FLAT_SEGS 0
        mov     dx, SEL_DATA
        mov     ds, dx
        mov     es, dx
        mov     fs, dx
        mov     gs, dx
        mov     ss, dx
%endmacro

; FAULTS "name", vector, segreg, selector, {instruction}: with `segreg` loaded with
; `selector`, the instruction raises `vector` with error code 0 at itself.
%macro FAULTS 5
        ARM_RESUME %%resume
        mov     ax, %4
        mov     %3, ax
%%at:   %5
        FLAT_SEGS
        DISARM
        FAIL    %1, "no fault"
        jmp     %%next
%%resume:
        VERIFY  %1, M_AT, %2, 0, %%at, SEL_CODE32
%%next:
%endmacro

; DESC selector, base, limit, access, flags
%macro DESC 5
        mov     eax, %1
        mov     ebx, %2
        mov     ecx, %3
        mov     dl, %4
        mov     dh, %5
        call    set_desc
%endmacro

main:
        DESC    SEL_SMALL, SCRATCH, 0xfff, 0x93, 0x4
        DESC    SEL_RO, SCRATCH, 0xffff, 0x91, 0x4
        DESC    SEL_DOWN, 0, 0xfff, 0x97, 0x4
        DESC    SEL_XO, 0, 0xfffff, 0x99, 0xc
        DESC    SEL_C16, LOAD_ADDR, 0xffff, 0x9b, 0x0
        DESC    SEL_DOWN16, SCRATCH, 0xfff, 0x97, 0x0
        DESC    SEL_D16, SCRATCH, 0xffff, 0x93, 0x0
        lgdt    [gdt_ptr]

        mov     dword [SCRATCH], 0
        mov     dword [SCRATCH + 0xffc], 0x11223344
        mov     ax, SEL_SMALL
        mov     es, ax
        mov     eax, [es:0xffc]
        mov     bl, [es:0xfff]
        mov     dword [es:0], 0xaabbccdd
        FLAT_SEGS
        CHECK   "small segment: last dword", eax, 0x11223344
        movzx   ebx, bl
        CHECK   "small segment: last byte", ebx, 0x11
        CHECK   "small segment: store adds the base", dword [SCRATCH], 0xaabbccdd

        mov     ax, SEL_RO
        mov     fs, ax
        mov     eax, [fs:0xffc]
        FLAT_SEGS
        CHECK   "read-only segment: load", eax, 0x11223344

        ; An expand-down stack with ESP far above its limit: PUSH and POP work.
        mov     ax, SEL_DOWN
        mov     ss, ax
        push    dword 0x55aa
        mov     ebx, [ss:esp]
        pop     eax
        FLAT_SEGS
        CHECK   "expand-down stack: pop", eax, 0x55aa
        CHECK   "expand-down stack: ss read", ebx, 0x55aa

        mov     eax, [cs:cs_word]
        CHECK   "readable cs override", eax, 0x600df00d

        call    sdm_requested
        test    eax, eax
        jz      .done
        call    sdm_tests
.done:  ret

cs_word:        dd      0x600df00d

; sdm_tests: the faults, which QEMU does not raise (see the top of the file).
sdm_tests:
        FAULTS  "dword across the limit", 13, ds, SEL_SMALL, {mov eax, [0xffd]}
        FAULTS  "byte beyond the limit", 13, ds, SEL_SMALL, {mov al, [0x1000]}
        FAULTS  "store across the limit", 13, es, SEL_SMALL, {mov dword [es:0xffe], 0x99999999}
        mov     eax, [SCRATCH + 0xffc]
        CHECK   "store across the limit wrote nothing", eax, 0x11223344
        FAULTS  "store to read-only", 13, es, SEL_RO, {mov [es:0], eax}
        FAULTS  "add to read-only", 13, es, SEL_RO, {add [es:0], eax}
        xor     esi, esi
        xor     edi, edi
        FAULTS  "movs to read-only", 13, es, SEL_RO, {movsb}
        FAULTS  "null ds", 13, ds, 0, {mov eax, [SCRATCH]}
        FAULTS  "null fs", 13, fs, 0, {mov eax, [fs:SCRATCH]}
        FAULTS  "store through cs", 13, ds, SEL_DATA, {mov [cs:cs_word], eax}
        FAULTS  "expand-down: below the limit", 12, ss, SEL_DOWN, {mov eax, [ss:0x800]}
        FAULTS  "expand-down: dword reaching the limit", 12, ss, SEL_DOWN, {mov eax, [ss:0xffd]}
        FAULTS  "expand-down: through ds", 13, ds, SEL_DOWN, {mov eax, [0]}
        mov     ax, SEL_DOWN
        mov     ds, ax
        mov     eax, [0x1000]
        FLAT_SEGS
        PASS    "expand-down: just above the limit"
        mov     esi, 0xffd
        FAULTS  "lods beyond the limit", 13, ds, SEL_SMALL, {lodsd}

        ; A load through an execute-only CS.
        ARM_RESUME .xo_resume
        jmp     SEL_XO:.xo
.xo:
.xo_at: mov     eax, [cs:cs_word]
        jmp     SEL_CODE32:.xo_back
.xo_back:
        DISARM
        FAIL    "load through execute-only cs", "no fault"
        jmp     .c16
.xo_resume:
        VERIFY  "load through execute-only cs", M_AT, 13, 0, .xo_at, SEL_XO

        ; 16-bit code (offsets relative to LOAD_ADDR).
.c16:   mov     dword [SCRATCH + 0xfffc], 0x77665544
        mov     dword [SCRATCH + 0x10], 0
        mov     dword [SCRATCH + 0x2000], 0
        ARM_RESUME .r16a
        jmp     SEL_C16:(code16 - LOAD_ADDR)
.r16a:  VERIFY  "16-bit: word at 0xffff", M_AT, 13, 0, c16_a - LOAD_ADDR, SEL_C16
        ARM_RESUME .r16b
        jmp     SEL_C16:(code16_b - LOAD_ADDR)
.r16b:  VERIFY  "16-bit expand-down: below the limit", M_AT, 13, 0, c16_b - LOAD_ADDR, SEL_C16
        ARM_RESUME .r16c
        jmp     SEL_C16:(code16_c - LOAD_ADDR)
.r16c:  VERIFY  "16-bit expand-down: beyond 0xffff", M_AT, 13, 0, c16_c - LOAD_ADDR, SEL_C16
        CHECK   "16-bit: word at 0xfffe", dword [SCRATCH + 0x10], 0x7766
        CHECK   "16-bit expand-down: word at 0xfffe", dword [SCRATCH + 0x2000], 0x7766
        ret

        bits    16
; code16: a word at 0xFFFE works, one at 0xFFFF crosses the 64 KiB limit.
code16:
        mov     ax, SEL_D16
        mov     ds, ax
        mov     ax, [0xfffe]
        mov     [0x10], ax
c16_a:  mov     ax, [0xffff]
        jmp     dword SEL_CODE32:fell_through
; code16_b: expand-down with B = 0: valid offsets 0x1000..0xFFFF.
code16_b:
        mov     ax, SEL_DOWN16
        mov     ds, ax
        mov     ax, [0xfffe]
        mov     [0x2000], ax
c16_b:  mov     ax, [0xfff]
        jmp     dword SEL_CODE32:fell_through
code16_c:
        mov     ax, SEL_DOWN16
        mov     ds, ax
c16_c:  mov     eax, [0xfffe]
        jmp     dword SEL_CODE32:fell_through
        bits    32

fell_through:
        FLAT_SEGS
        DISARM
        FAIL    "16-bit", "no fault"
        ret

GUEST_END
