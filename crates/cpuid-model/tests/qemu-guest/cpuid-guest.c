/* A multiboot guest that prints the CPUID it sees in the `cpuid -r` format on the
 * debugcon port (0xe9) and exits through isa-debug-exit (0xf4). Build and run:
 *   gcc -m32 -ffreestanding -fno-pic -nostdlib -static -O2 -Wl,-Ttext=0x100000 \
 *       -Wl,--build-id=none -o cpuid-guest.elf cpuid-guest.c
 *   qemu-system-x86_64 -accel tcg -cpu EPYC-Rome -kernel cpuid-guest.elf -display none \
 *       -debugcon file:out.txt -device isa-debug-exit,iobase=0xf4,iosize=0x04
 * Used to check what QEMU 7.2 gives a model's guest (caches, 0xD, address sizes). */
#define MB_MAGIC 0x1BADB002u
#define MB_FLAGS 0x00000003u
__attribute__((section(".text.mb"), used, aligned(4)))
static const unsigned int mb_header[3] = {MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)};

static inline void outb(unsigned short port, unsigned char v) {
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static void puts_(const char *s) { while (*s) outb(0xe9, (unsigned char)*s++); }
static void hex(unsigned int v, int digits) {
    static const char d[] = "0123456789abcdef";
    for (int i = digits - 1; i >= 0; i--) outb(0xe9, (unsigned char)d[(v >> (4 * i)) & 0xf]);
}
static void cpuid(unsigned int leaf, unsigned int sub, unsigned int r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}
static void line(unsigned int leaf, unsigned int sub, unsigned int r[4]) {
    puts_("   0x"); hex(leaf, 8); puts_(" 0x"); hex(sub, 2);
    puts_(": eax=0x"); hex(r[0], 8); puts_(" ebx=0x"); hex(r[1], 8);
    puts_(" ecx=0x"); hex(r[2], 8); puts_(" edx=0x"); hex(r[3], 8); puts_("\n");
}
static void leaf_all(unsigned int leaf) {
    unsigned int r[4];
    unsigned int base = leaf & 0xffff0000u;
    (void)base;
    if (leaf == 4 || leaf == 0x8000001du) {
        for (unsigned int s = 0; s < 16; s++) {
            cpuid(leaf, s, r); line(leaf, s, r);
            if ((r[0] & 0x1f) == 0) break;
        }
    } else if (leaf == 0xb || leaf == 0x1f) {
        for (unsigned int s = 0; s < 8; s++) {
            cpuid(leaf, s, r); line(leaf, s, r);
            if (((r[2] >> 8) & 0xff) == 0) break;
        }
    } else if (leaf == 7 || leaf == 0x14 || leaf == 0x12) {
        cpuid(leaf, 0, r); line(leaf, 0, r);
        unsigned int n = r[0] > 4 ? 4 : r[0];
        for (unsigned int s = 1; s <= n; s++) { cpuid(leaf, s, r); line(leaf, s, r); }
    } else if (leaf == 0xd) {
        for (unsigned int s = 0; s < 64; s++) {
            cpuid(leaf, s, r);
            if (s < 2 || r[0] | r[1] | r[2] | r[3]) line(leaf, s, r);
        }
    } else {
        cpuid(leaf, 0, r); line(leaf, 0, r);
    }
}
static void range(unsigned int base) {
    unsigned int r[4];
    cpuid(base, 0, r);
    unsigned int max = r[0];
    if (max < base || max > base + 0xff) { line(base, 0, r); return; }
    for (unsigned int l = base; l <= max; l++) leaf_all(l);
}
void _start(void) {
    puts_("CPU:\n");
    range(0);
    range(0x40000000u);
    range(0x80000000u);
    range(0xc0000000u);
    outb(0xf4, 0);
    for (;;) __asm__ volatile("hlt");
}
