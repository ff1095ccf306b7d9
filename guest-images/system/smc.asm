; smc: self-modifying code. A store into code must be seen by the next execution of the
; bytes it changed:
; - same block: a store patches an instruction a few bytes further on, with no branch in
;   between (the SDM's "self-modifying code": the processor detects the store);
; - a loop whose body patches itself: the second iteration runs the new instruction;
; - next block: a function called once (so it is translated), patched, called again;
; - other page: the same with the function on another 4 KiB page;
; - a code page rewritten by REP MOVSB and then called;
; - through an alias: with paging, one frame mapped at two linear addresses; code runs at
;   the first, is patched through the second, runs again at the first.

%include "lib.inc"

PD              equ SCRATCH
PT              equ SCRATCH + 0x1000
CODE_VA         equ 0x40000000          ; the frame FRAME, where the code runs
ALIAS_VA        equ 0x40001000          ; the same frame, where it is written
FRAME           equ SCRATCH + 0x10000

main:
        ; same block: patch the immediate of the MOV two instructions on
        mov     byte [.same_imm + 1], 0x42
        nop
.same_imm:
        mov     al, 0x00
        movzx   eax, al
        CHECK   "same block: patched immediate", eax, 0x42

        ; a loop patching its own body: 1, then 5, then 5
        xor     eax, eax
        mov     ecx, 3
.loop:
.add:   add     eax, byte 1
        mov     byte [.add + 2], 5
        dec     ecx
        jnz     .loop
        CHECK   "loop patching itself", eax, 11

        ; next block: call, patch, call
        call    ret_imm
        CHECK   "next block: first", eax, 0x1111
        mov     dword [ret_imm + 1], 0x2222
        call    ret_imm
        CHECK   "next block: patched", eax, 0x2222

        ; other page
        call    far_page_fn
        CHECK   "other page: first", eax, 0x3333
        mov     dword [far_page_fn + 1], 0x4444
        call    far_page_fn
        CHECK   "other page: patched", eax, 0x4444

        ; REP MOVSB over a function, then call it
        call    far_page_fn2
        CHECK   "rep movsb: first", eax, 0x5555
        mov     esi, replacement
        mov     edi, far_page_fn2
        mov     ecx, replacement_end - replacement
        cld
        rep movsb
        call    far_page_fn2
        CHECK   "rep movsb: replaced", eax, 0x6666

        ; through an alias: FRAME at CODE_VA (run) and ALIAS_VA (write)
        mov     esi, alias_code
        mov     edi, FRAME
        mov     ecx, alias_code_end - alias_code
        rep movsb
        mov     edi, PD
        call    pd32_identity
        mov     edi, PT
        xor     eax, eax
        mov     ecx, 1024
        rep stosd
        mov     dword [PD + 4 * (CODE_VA >> 22)], PT | PTE_P | PTE_W
        mov     dword [PT + 4 * ((CODE_VA >> 12) & 1023)], FRAME | PTE_P | PTE_W
        mov     dword [PT + 4 * ((ALIAS_VA >> 12) & 1023)], FRAME | PTE_P | PTE_W
        mov     eax, PD
        call    paging32_on
        mov     ebx, CODE_VA
        call    ebx
        CHECK   "alias: first", eax, 0x7777
        mov     dword [ALIAS_VA + 1], 0x8888
        call    ebx
        CHECK   "alias: patched through the other address", eax, 0x8888
        call    paging32_off
        ret

; ret_imm: MOV EAX, imm32 (the immediate at +1); RET.
ret_imm:
        mov     eax, 0x1111
        ret

; Copied to FRAME for the alias test.
alias_code:
        mov     eax, 0x7777
        ret
alias_code_end:

; Copied over far_page_fn2.
replacement:
        mov     eax, 0x6666
        ret
replacement_end:

        align   4096
        times   64 db 0x90
far_page_fn:
        mov     eax, 0x3333
        ret
        align   64
far_page_fn2:
        mov     eax, 0x5555
        ret

GUEST_END
