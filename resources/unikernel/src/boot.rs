//! From the PVH entry (32-bit protected mode, paging off) to `kernel_main` in long mode.
//!
//! Everything the switch needs is static: the GDT and the identity page tables are built
//! by the assembler into `.data`, so the entry path runs a few dozen instructions only.

use core::arch::global_asm;

// The PVH entry note: linux-loader finds it through the PT_NOTE header and starts the
// first vCPU at the 32-bit address it holds (XEN_ELFNOTE_PHYS32_ENTRY = 18).
global_asm!(
    r#"
    .pushsection .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 4
    .long 18
    .asciz "Xen"
    .balign 4
    .long pvh_start
    .balign 4
    .popsection
    "#,
    options(att_syntax)
);

// The entry: ebx = hvm_start_info. Stamp the boot timer first, then zero .bss, remember
// start_info, and switch to long mode with SSE usable (CR0.MP, CR4.OSFXSR|OSXMMEXCPT).
global_asm!(
    r#"
    .pushsection .text.pvh_entry, "ax"
    .code32
    .global pvh_start
pvh_start:
    movw $0x440, %dx
    xorl %eax, %eax
    outb %al, %dx

    cld
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    rep stosb

    movl %ebx, pvh_start_info_paddr

    lgdt boot_gdt_pointer

    movl %cr4, %eax
    orl $0x620, %eax
    movl %eax, %cr4

    movl $boot_pml4, %eax
    movl %eax, %cr3

    movl $0xc0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr

    movl %cr0, %eax
    andl $0xfffffff3, %eax
    orl $0x80000002, %eax
    movl %eax, %cr0

    ljmp $0x08, $long_mode_entry

    .code64
long_mode_entry:
    movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    xorl %eax, %eax
    movl %eax, %fs
    movl %eax, %gs
    movl $boot_stack_top, %esp
    call kernel_main
2:
    cli
    hlt
    jmp 2b
    .popsection
    "#,
    options(att_syntax)
);

// GDT: null, 64-bit code (0x08), flat data (0x10). The pointer's base is read as 32 bits
// by the 32-bit lgdt and is below 4 GiB.
global_asm!(
    r#"
    .pushsection .data.boot_gdt, "aw"
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
boot_gdt_end:
    .balign 8
boot_gdt_pointer:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    .balign 8
    .global pvh_start_info_paddr
pvh_start_info_paddr:
    .long 0
    .long 0
    .popsection
    "#,
    options(att_syntax)
);

// Identity map of the first 4 GiB with 2 MiB pages. The top 1 GiB, the MMIO hole (PCI
// BARs from 0xc0000000, some of them a passed-through device's own registers; ECAM at
// 0xe0000000, IOAPIC, local APIC), is mapped uncached (PCD|PWT).
global_asm!(
    r#"
    .pushsection .data.boot_page_tables, "aw"
    .balign 4096
boot_pml4:
    .quad boot_pdpt + 0x3
    .fill 511, 8, 0
boot_pdpt:
    .quad boot_pd + 0x3
    .quad boot_pd + 0x1003
    .quad boot_pd + 0x2003
    .quad boot_pd + 0x3003
    .fill 508, 8, 0
boot_pd:
    .set .Lpage, 0
    .rept 1536
    .quad .Lpage + 0x83
    .set .Lpage, .Lpage + 0x200000
    .endr
    .rept 512
    .quad .Lpage + 0x9b
    .set .Lpage, .Lpage + 0x200000
    .endr
    .popsection

    .pushsection .boot_stack, "aw", @nobits
    .balign 16
    .skip 32768
boot_stack_top:
    .popsection
    "#,
    options(att_syntax)
);

extern "C" {
    static pvh_start_info_paddr: u64;
}

/// Guest-physical address of `hvm_start_info`, as the VMM passed it in ebx.
pub fn start_info_paddr() -> u64 {
    // SAFETY: written once by the entry code before any Rust runs.
    unsafe { core::ptr::read_volatile(&raw const pvh_start_info_paddr) }
}
