; reset: resets the machine the way the multiboot command line names, after one line that
; says which; run with QEMU's -no-reboot / crane86's --no-reboot, a reset ends the run with
; exit status 0 and nothing printed after that line.
; - `reset=cf9`: the PIIX reset control register, port 0xCF9: 0x02 (hard reset selected),
;   then 0x06 (the reset itself, on the 0 -> 1 edge of bit 2);
; - `reset=kbd`: the i8042's "pulse output port" command 0xFE on port 0x64, after waiting
;   for its input buffer to be empty.
; Without either, or if the machine is still running 100 ms after the write, the guest
; prints a FAIL line and leaves through isa-debug-exit.

%include "lib.inc"
%include "pc.inc"

main:
        call    acpi_find                   ; for the PM timer
        jc      .out
        mov     esi, kw_cf9
        call    cmdline_has
        jnc     .kbd
        PRINT   `reset: port 0xcf9\n`
        mov     dx, 0xcf9
        mov     al, 0x02
        out     dx, al
        mov     al, 0x06
        out     dx, al
        jmp     .still
.kbd:   mov     esi, kw_kbd
        call    cmdline_has
        jnc     .none
        PRINT   `reset: i8042 command 0xfe\n`
.ibf:   in      al, 0x64
        test    al, 0x02
        jnz     .ibf
        mov     al, 0xfe
        out     0x64, al
.still: mov     ecx, 100000
        call    delay
        FAIL    "reset", "the machine still runs 100 ms after the reset"
.out:   ret
.none:  FAIL    "reset", "no reset=cf9 or reset=kbd on the command line"
        ret

kw_cf9: db      "reset=cf9", 0
kw_kbd: db      "reset=kbd", 0

GUEST_END
