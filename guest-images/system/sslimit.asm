; sslimit: the stack-segment limit on the frames the processor pushes and pops itself
; (SDM Vol. 3 5.3, 6.12.1; Vol. 2 CALL, ENTER, INT n, IRET, RET), on small expand-down
; stacks: a ring-1 stack (TSS.SS1) that a call gate and interrupt gates from ring 3 switch
; to, and a ring-3 stack.
; Checked with QEMU as the referee: frames that fit exactly (a call gate with two
; parameters, INT n and an exception to ring 1, ENTER with a nesting level) land where the
; SDM says.
; QEMU 7.2 TCG checks no stack limit on any of these, so the faults run only with `sdm-only`
; on the multiboot command line (crane86 alone), each checking the vector, error code,
; faulting EIP, CS, ESP and SS, and that nothing was pushed:
; - #SS(new SS selector) when the frame does not fit the inner stack of a call gate or of
;   an interrupt gate (+1, EXT, for an exception); #SS(0) when a call gate's parameters lie
;   beyond the caller's stack limit;
; - #SS(0) when the frame does not fit the current stack: INT n to ring-3 code, a far CALL;
;   and when RETF or IRET would pop beyond it;
; - ENTER with a nesting level whose third push does not fit (#SS(0), none of the pushes
;   before it written), and ENTER whose allocation takes ESP below the limit.

%include "lib.inc"

SEL_R1CODE      equ SEL_FREE            ; 32-bit code, DPL 1, flat
SEL_R1STK       equ SEL_FREE + 0x08     ; data, DPL 1, base SCRATCH, expand-down above 0xFFF
SEL_U3STK       equ SEL_FREE + 0x10     ; data, DPL 3, base SCRATCH, expand-down above 0x1FFF
SEL_CGATE       equ SEL_FREE + 0x18     ; call gate, DPL 3, to r1_entry, two parameters
R1_BOTTOM       equ 0x1000              ; lowest valid offset of the ring-1 stack
U3_BOTTOM       equ 0x2000              ; lowest valid offset of the ring-3 stack
STK             equ SCRATCH             ; linear address of offset 0 of both stacks
V_R1            equ 0x31                ; INT n vector whose gate goes to ring 1
V_R3            equ 0x32                ; INT n vector whose gate goes to ring-3 code
M_FRAME         equ M_VEC | M_ERR | M_EIP | M_CS | M_ESP | M_SS
CS3             equ SEL_UCODE32 | 3
SS3             equ SEL_U3STK | 3
SS1             equ SEL_R1STK | 1

; DESC selector, base, limit, access, flags
%macro DESC 5
        mov     eax, %1
        mov     ebx, %2
        mov     ecx, %3
        mov     dl, %4
        mov     dh, %5
        call    set_desc
%endmacro

; RING3 entry, resume: arms the exception handler to resume at `resume` and runs `entry`
; in ring 3 (flat stack; the code there loads the small one).
%macro RING3 2
        ARM_RESUME %2
        mov     eax, %1
        mov     ecx, USER_STACK_TOP
        mov     edx, FL_FIXED
        jmp     to_ring3
%endmacro

; U3 sp: in ring 3, SS = the small ring-3 stack, ESP = sp.
%macro U3 1
        mov     ax, SS3
        mov     ss, ax
        mov     esp, %1
%endmacro

; NOTHING_PUSHED "name", offset: the dwords of the stacks from `offset` up to 0x20 bytes
; above it are still zero.
%macro NOTHING_PUSHED 2
        mov     esi, STK + %2
        call    sum8
        CHECK   %1, eax, 0
%endmacro

main:
        DESC    SEL_R1CODE, 0, 0xfffff, 0xbb, 0xc
        DESC    SEL_R1STK, STK, R1_BOTTOM - 1, 0xb7, 0x4
        DESC    SEL_U3STK, STK, U3_BOTTOM - 1, 0xf7, 0x4
        ; The call gate: offset r1_entry in SEL_R1CODE, two dword parameters, DPL 3.
        mov     eax, r1_entry
        mov     [gdt + SEL_CGATE], ax
        mov     word [gdt + SEL_CGATE + 2], SEL_R1CODE
        mov     word [gdt + SEL_CGATE + 4], 0xec02
        shr     eax, 16
        mov     [gdt + SEL_CGATE + 6], ax
        lgdt    [gdt_ptr]
        ; INT V_R1 to ring 1, INT V_R3 to ring-3 code (both DPL 3 interrupt gates).
        mov     eax, V_R1
        mov     ebx, r1_entry
        mov     cl, 0xee
        call    set_gate32
        mov     word [idt32 + 8 * V_R1 + 2], SEL_R1CODE
        mov     eax, V_R3
        mov     ebx, u3_handler
        call    set_gate32
        mov     word [idt32 + 8 * V_R3 + 2], SEL_UCODE32
        mov     dword [tss32 + 16], SS1            ; SS1 (ESP1 per test)
        call    enable_tss

        call    fitting_tests
        call    sdm_requested
        test    eax, eax
        jz      .done
        call    sdm_tests
.done:  ret

; clear_stacks: zeroes both stacks' first 0x1100 valid bytes.
clear_stacks:
        pushad
        mov     edi, STK + R1_BOTTOM
        mov     ecx, (U3_BOTTOM - R1_BOTTOM + 0x100) / 4
        xor     eax, eax
        cld
        rep stosd
        popad
        ret

; sum8: EAX = the OR of the eight dwords at ESI.
sum8:
        push    ecx
        xor     eax, eax
        mov     ecx, 8
.l:     or      eax, [esi + 4*ecx - 4]
        loop    .l
        pop     ecx
        ret

; ---- frames that fit (QEMU referees) ----
fitting_tests:
        ; A call gate with two parameters: 24 bytes on the ring-1 stack, exactly its room.
        call    clear_stacks
        mov     dword [STK + U3_BOTTOM], 0x1111
        mov     dword [STK + U3_BOTTOM + 4], 0x2222
        mov     dword [tss32 + 12], R1_BOTTOM + 24
        RING3   .cg, .cg_done
.cg:    U3      U3_BOTTOM
        call    SEL_CGATE | 3:0
.cg_ret:
.cg_done:
        VERIFY  "call gate: ring 1 reached", M_VEC | M_EIP | M_CS | M_ESP | M_SS, 0x3f, 0, \
                r1_entry + 2, SEL_R1CODE | 1, 0, R1_BOTTOM, SS1
        CHECK   "call gate: return eip", dword [STK + R1_BOTTOM], .cg_ret
        CHECK   "call gate: return cs", dword [STK + R1_BOTTOM + 4], CS3
        CHECK   "call gate: first parameter", dword [STK + R1_BOTTOM + 8], 0x1111
        CHECK   "call gate: second parameter", dword [STK + R1_BOTTOM + 12], 0x2222
        CHECK   "call gate: caller esp", dword [STK + R1_BOTTOM + 16], U3_BOTTOM
        CHECK   "call gate: caller ss", dword [STK + R1_BOTTOM + 20], SS3

        ; INT n to ring 1: 20 bytes.
        call    clear_stacks
        mov     dword [tss32 + 12], R1_BOTTOM + 20
        RING3   .int, .int_done
.int:   U3      U3_BOTTOM + 0x10
        int     V_R1
.int_next:
.int_done:
        VERIFY  "int to ring 1: reached", M_VEC | M_CS | M_ESP | M_SS, 0x3f, 0, 0, \
                SEL_R1CODE | 1, 0, R1_BOTTOM, SS1
        CHECK   "int to ring 1: eip", dword [STK + R1_BOTTOM], .int_next
        CHECK   "int to ring 1: caller esp", dword [STK + R1_BOTTOM + 12], U3_BOTTOM + 0x10

        ; An exception (#UD, no error code) through a gate to ring 1: 20 bytes.
        call    clear_stacks
        call    ud_to_ring1
        RING3   .ud, .ud_done
.ud:    U3      U3_BOTTOM + 0x10
.ud_at: ud2
.ud_done:
        call    restore_ud
        VERIFY  "exception to ring 1: reached", M_VEC | M_CS | M_ESP | M_SS, 0x3f, 0, 0, \
                SEL_R1CODE | 1, 0, R1_BOTTOM, SS1
        CHECK   "exception to ring 1: eip", dword [STK + R1_BOTTOM], .ud_at

        ; ENTER 0, 3 on the ring-3 stack with room for its four pushes.
        call    clear_stacks
        mov     dword [STK + U3_BOTTOM + 0xfc], 0xaaaa
        mov     dword [STK + U3_BOTTOM + 0xf8], 0xbbbb
        RING3   .ent, .ent_done
.ent:   U3      U3_BOTTOM + 16
        mov     ebp, U3_BOTTOM + 0x100
        enter   0, 3
        mov     eax, ebp
        int     0x3f
.ent_done:
        VERIFY  "enter 0, 3: esp", M_ESP | M_SS, 0, 0, 0, 0, 0, U3_BOTTOM, SS3
        CHECK   "enter 0, 3: old ebp", dword [STK + U3_BOTTOM + 12], U3_BOTTOM + 0x100
        CHECK   "enter 0, 3: copied frame pointer 1", dword [STK + U3_BOTTOM + 8], 0xaaaa
        CHECK   "enter 0, 3: copied frame pointer 2", dword [STK + U3_BOTTOM + 4], 0xbbbb
        CHECK   "enter 0, 3: frame pointer", dword [STK + U3_BOTTOM], U3_BOTTOM + 12
        ret

; ud_to_ring1: vector 6 (#UD) to r1_entry in ring 1.
ud_to_ring1:
        mov     eax, 6
        mov     ebx, r1_entry
        mov     cl, 0x8e
        call    set_gate32
        mov     word [idt32 + 8 * 6 + 2], SEL_R1CODE
        ret

; restore_ud: vector 6 back to its stub.
restore_ud:
        mov     eax, 6
        mov     ebx, exc_stubs32 + 6 * STUB_SIZE
        mov     cl, 0x8e
        jmp     set_gate32

; ---- the faults (crane86 alone, see the top of the file) ----
sdm_tests:
        ; A call gate frame one dword too big for the ring-1 stack: #SS(SS1 selector).
        call    clear_stacks
        mov     dword [tss32 + 12], R1_BOTTOM + 20
        RING3   .cg, .cg_done
.cg:    U3      U3_BOTTOM
.cg_at: call    SEL_CGATE | 3:0
.cg_done:
        VERIFY  "call gate: no room on the new stack", M_FRAME, 12, SEL_R1STK, .cg_at, CS3, \
                0, U3_BOTTOM, SS3
        NOTHING_PUSHED "call gate: no room on the new stack: nothing pushed", R1_BOTTOM

        ; The parameters beyond the caller's stack limit: #SS(0).
        mov     dword [tss32 + 12], R1_BOTTOM + 24
        RING3   .par, .par_done
.par:   U3      U3_BOTTOM - 4
.par_at: call   SEL_CGATE | 3:0
.par_done:
        VERIFY  "call gate: parameters beyond the limit", M_FRAME, 12, 0, .par_at, CS3, \
                0, U3_BOTTOM - 4, SS3
        NOTHING_PUSHED "call gate: parameters beyond the limit: nothing pushed", R1_BOTTOM

        ; INT n to ring 1 with 16 bytes of room: #SS(SS1); an exception: #SS(SS1 | EXT).
        mov     dword [tss32 + 12], R1_BOTTOM + 16
        RING3   .int, .int_done
.int:   U3      U3_BOTTOM + 0x10
.int_at: int    V_R1
.int_done:
        VERIFY  "int to ring 1: no room", M_FRAME, 12, SEL_R1STK, .int_at, CS3, \
                0, U3_BOTTOM + 0x10, SS3
        call    ud_to_ring1
        RING3   .ud, .ud_done
.ud:    U3      U3_BOTTOM + 0x10
.ud_at: ud2
.ud_done:
        call    restore_ud
        VERIFY  "exception to ring 1: no room", M_FRAME, 12, SEL_R1STK | 1, .ud_at, CS3, \
                0, U3_BOTTOM + 0x10, SS3
        NOTHING_PUSHED "ring 1: nothing pushed", R1_BOTTOM

        ; The current stack: INT n to ring-3 code with 8 bytes of room, a far CALL with 4.
        RING3   .i3, .i3_done
.i3:    U3      U3_BOTTOM + 8
.i3_at: int     V_R3
.i3_done:
        VERIFY  "int to ring 3: no room", M_FRAME, 12, 0, .i3_at, CS3, 0, U3_BOTTOM + 8, SS3
        RING3   .fc, .fc_done
.fc:    U3      U3_BOTTOM + 4
.fc_at: call    CS3:u3_handler
.fc_done:
        VERIFY  "far call: no room", M_FRAME, 12, 0, .fc_at, CS3, 0, U3_BOTTOM + 4, SS3
        NOTHING_PUSHED "current stack: nothing pushed", U3_BOTTOM

        ; Pops below the limit.
        RING3   .rf, .rf_done
.rf:    U3      U3_BOTTOM - 4
.rf_at: retf
.rf_done:
        VERIFY  "retf below the limit", M_FRAME, 12, 0, .rf_at, CS3, 0, U3_BOTTOM - 4, SS3
        RING3   .ir, .ir_done
.ir:    U3      U3_BOTTOM - 8
.ir_at: iretd
.ir_done:
        VERIFY  "iret below the limit", M_FRAME, 12, 0, .ir_at, CS3, 0, U3_BOTTOM - 8, SS3

        ; ENTER 0, 3 with room for two of its four pushes: nothing written.
        RING3   .ent, .ent_done
.ent:   U3      U3_BOTTOM + 8
        mov     ebp, U3_BOTTOM + 0x100
.ent_at: enter  0, 3
.ent_done:
        VERIFY  "enter 0, 3: third push beyond the limit", M_FRAME, 12, 0, .ent_at, CS3, \
                0, U3_BOTTOM + 8, SS3
        ; ENTER 16, 0: the push fits, the allocation does not.
        RING3   .al, .al_done
.al:    U3      U3_BOTTOM + 8
.al_at: enter   16, 0
.al_done:
        VERIFY  "enter 16, 0: allocation beyond the limit", M_FRAME, 12, 0, .al_at, CS3, \
                0, U3_BOTTOM + 8, SS3
        NOTHING_PUSHED "enter: nothing pushed", U3_BOTTOM
        ret

; Ring 1, reached through the call gate, INT V_R1 or #UD: back to ring 0.
r1_entry:
        int     0x3f

; Ring-3 code INT V_R3 and the far CALL go to: back to ring 0.
u3_handler:
        int     0x3f

GUEST_END
