/*
 * loss_bpf.c - packet loss on a link where the kernel has no tc netem: a
 * tc classifier (cls_bpf, direct action) that drops 5% of what leaves an
 * interface, at random. tests/faults/netns_faults.sh builds it with
 * `clang -target bpf` and test_link attaches it to rail 2's veth ends.
 * Nothing is included: the one helper is called by its number, so no
 * kernel or libbpf headers are needed.
 */
typedef unsigned int u32;

#define SEC(name) __attribute__((section(name), used))
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define LOSS_PERCENT 5

/* BPF_FUNC_get_prandom_u32, from the kernel's stable helper numbering. */
static u32 (*const get_prandom_u32)(void) = (void *)7;

SEC("classifier") int drop_some(void *skb)
{
    (void)skb;
    return get_prandom_u32() % 100 < LOSS_PERCENT ? TC_ACT_SHOT : TC_ACT_OK;
}

char program_license[] SEC("license") = "GPL";
