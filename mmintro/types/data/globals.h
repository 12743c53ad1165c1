/*
 * Kernel global variables mmintro places in its simulated kernel image, declared as in the
 * 6.18 sources (BTF carries only per-CPU variables, so the declarations of ordinary globals
 * are restated here; every type named below comes from the BTF).
 *
 * Array bounds that depend on the build are symbolic, resolved by mmintro/types/closure.py
 * from the BTF of the build at hand: an enumerator of that name (NR_VM_ZONE_STAT_ITEMS,
 * NR_KMALLOC_TYPES, ...), else a constant derived from the BTF's layouts (NR_CPUS =
 * 8 * sizeof(struct cpumask), MAX_NUMNODES = 8 * sizeof(nodemask_t), MAX_NR_ZONES =
 * __MAX_NR_ZONES), else a configuration constant with an x86-64 default (closure.ARCH_DEFAULTS:
 * __LOG_BUF_LEN and PRB_DESCS_COUNT from CONFIG_LOG_BUF_SHIFT, HUGE_MAX_HSTATE, MAX_SWAPFILES).
 * Numeric bounds are fixed by the x86-64 architecture (512 entries per page-table page, a
 * 4 KiB zero page) or by the source (kmalloc_size_index[24], task_state_array[]).
 *
 * Format: one declaration per line, "TYPE [*...] NAME[[N]...];" with N a number or a symbol;
 * a trailing comment on the same line is allowed.  Per-CPU variables are not declared here
 * (closure.PERCPU_VARS: their types come from the BTF DATASEC).
 */
unsigned long page_offset_base;
unsigned long vmalloc_base;
unsigned long vmemmap_base;
unsigned long phys_base;
unsigned long max_pfn;
unsigned long max_low_pfn;
unsigned long min_low_pfn;
unsigned long totalreserve_pages;
unsigned long totalcma_pages;
atomic_long_t _totalram_pages;
struct pglist_data *node_data[MAX_NUMNODES];
nodemask_t node_states[NR_NODE_STATES];
unsigned int nr_node_ids;
unsigned int nr_cpu_ids;
struct cpumask __cpu_online_mask;
struct cpumask __cpu_possible_mask;
struct cpumask __cpu_present_mask;
struct cpumask __cpu_active_mask;
unsigned long __per_cpu_offset[NR_CPUS];
struct mem_section **mem_section;
unsigned long __highest_present_section_nr;
struct mm_struct init_mm;
pgd_t swapper_pg_dir[512];
pud_t level3_kernel_pgt[512];
pmd_t level2_kernel_pgt[512];
struct resource iomem_resource;
struct resource ioport_resource;
atomic_long_t vm_zone_stat[NR_VM_ZONE_STAT_ITEMS];
atomic_long_t vm_node_stat[NR_VM_NODE_STAT_ITEMS];
atomic_long_t vm_numa_event[NR_VM_NUMA_EVENT_ITEMS];
int min_free_kbytes;
int user_min_free_kbytes;
int watermark_scale_factor;
int watermark_boost_factor;
int sysctl_lowmem_reserve_ratio[MAX_NR_ZONES];
int sysctl_overcommit_memory;
int sysctl_overcommit_ratio;
unsigned long sysctl_overcommit_kbytes;
struct percpu_counter vm_committed_as;
s32 vm_committed_as_batch;  /* mm/util.c */
int page_group_by_mobility_disabled;
unsigned int pageblock_order;
unsigned long nr_kernel_pages;
unsigned long nr_all_pages;
struct e820_table *e820_table;
struct task_struct init_task;
union thread_union init_thread_union;
struct pid_namespace init_pid_ns;
atomic_t panic_cpu;
int crashing_cpu;
struct list_head slab_caches;
kmem_buckets kmalloc_caches[NR_KMALLOC_TYPES];
u8 kmalloc_size_index[24];
struct kmem_cache *kmem_cache;
struct kmem_cache *kmem_cache_node;
struct kmem_cache *kmem_buckets_cache;
kmem_buckets *user_buckets;
kmem_buckets *msg_buckets;
struct kmem_cache *task_struct_cachep;
struct kmem_cache *mm_cachep;
struct kmem_cache *vm_area_cachep;
struct kmem_cache *maple_node_cache;
struct kmem_cache *radix_tree_node_cachep;
struct kmem_cache *anon_vma_cachep;
struct kmem_cache *anon_vma_chain_cachep;
struct kmem_cache *sighand_cachep;
struct kmem_cache *signal_cachep;
struct kmem_cache *files_cachep;
struct kmem_cache *fs_cachep;
struct kmem_cache *pid_cachep;
struct kmem_cache *names_cachep;
struct kmem_cache *dentry_cache;
struct kmem_cache *inode_cachep;
struct kmem_cache *filp_cachep;
struct kmem_cache *bfilp_cachep;
struct kmem_cache *bh_cachep;
char __log_buf[__LOG_BUF_LEN];
struct prb_desc _printk_rb_static_descs[PRB_DESCS_COUNT];
struct printk_info _printk_rb_static_infos[PRB_DESCS_COUNT];
struct printk_ringbuffer printk_rb_static;
struct printk_ringbuffer *prb;
char *task_state_array[9];
struct hstate hstates[HUGE_MAX_HSTATE];
int hugetlb_max_hstate;
struct swap_info_struct *swap_info[MAX_SWAPFILES]; /* upper bound: see closure.ARCH_DEFAULTS */
unsigned int nr_swapfiles;
long total_swap_pages;
atomic_long_t nr_swap_pages;
struct plist_head swap_active_head;
int vm_swappiness;
struct super_block *blockdev_superblock;
struct vmap_node *vmap_nodes;
unsigned int nr_vmap_nodes;
unsigned int vmap_zone_size;
struct vmap_node single;
struct rb_root free_vmap_area_root;
struct list_head free_vmap_area_list;
struct kmem_cache *vmap_area_cachep;
bool vmap_initialized;
atomic_long_t vmap_lazy_nr;
atomic_long_t nr_vmalloc_pages;
char _text[];
char _stext[];
char _etext[];
char __start_rodata[];
char __end_rodata[];
char _sdata[];
char _edata[];
char __bss_start[];
char __bss_stop[];
char _end[];
void *high_memory;
unsigned long direct_pages_count[5]; /* source: [PG_LEVEL_NUM] = 6 in the 6.18 BTF; pinned data keeps 5 (entries 4K..1G are read) */
int pcpu_nr_units;
unsigned long pcpu_nr_populated;
u8 *numa_distance;
int numa_distance_cnt;
int vm_dirty_ratio;
int dirty_background_ratio;
unsigned long vm_dirty_bytes;
unsigned long dirty_background_bytes;
int sysctl_stat_interval;
unsigned long empty_zero_page[512];
unsigned long zero_pfn;
unsigned long transparent_hugepage_flags;
unsigned long huge_anon_orders_always;
unsigned long huge_anon_orders_madvise;
unsigned long huge_anon_orders_inherit;
struct folio *huge_zero_folio;
unsigned long huge_zero_pfn;
unsigned int default_hstate_idx;
struct kmem_cache *hugetlbfs_inode_cachep;
struct kmem_cache *shmem_inode_cachep;
struct kmem_cache *bdev_cachep;  /* block/bdev.c bdev_cache_init(): struct bdev_inode */
struct kmem_cache *policy_cache;
struct kmem_cache *sn_cache;
struct mempolicy default_policy;
struct wb_domain global_wb_domain;
struct backing_dev_info noop_backing_dev_info;
struct list_head bdi_list;
struct list_head super_blocks;
unsigned int dirty_writeback_interval;
unsigned int dirty_expire_interval;
int vm_highmem_is_dirtyable;
int nr_threads;
unsigned long total_forks;
int sysctl_max_map_count;
struct fs_struct init_fs;
unsigned long jiffies;
struct vm_operations_struct special_mapping_vmops;
struct vm_special_mapping vdso_mapping;
struct vm_special_mapping vdso_vvar_mapping;
struct vm_special_mapping vvar_vclock_mapping;
struct nsproxy init_nsproxy;
struct dentry_operations anon_ops;
struct vm_operations_struct gate_vma_ops;
struct vm_area_struct gate_vma;
struct vm_operations_struct shmem_anon_vm_ops;
struct address_space_operations shmem_aops;
struct cpuinfo_x86 boot_cpu_data;  /* arch/x86/kernel/setup.c: x86_capability for boot_cpu_has() */
struct cred init_cred;  /* kernel/cred.c: brings struct cred (status: Uid, Gid, Groups, SigQ, Cap*) */
struct group_info init_groups;  /* kernel/cred.c (static): brings struct group_info (status: Groups) */
struct ucounts init_ucounts;  /* kernel/ucount.c: brings struct ucounts (status: SigQ) */
struct kmem_cache *cred_jar;  /* kernel/cred.c (static): the cred cache, prepare_creds() */
struct signal_struct init_signals;  /* init/init_task.c (static): init_task.signal */
struct sighand_struct init_sighand;  /* init/init_task.c (static): init_task.sighand */
struct pid init_struct_pid;  /* kernel/pid.c: pid 0, init_task's pids and every process group of its descendants */
int max_threads;  /* kernel/fork.c: set_max_threads() (fork_init) */
enum ssb_mitigation ssb_mode;  /* arch/x86/kernel/cpu/bugs.c (static, __ro_after_init) */
enum spectre_v2_user_mitigation spectre_v2_user_ibpb;  /* arch/x86/kernel/cpu/bugs.c (static) */
enum spectre_v2_user_mitigation spectre_v2_user_stibp;  /* arch/x86/kernel/cpu/bugs.c (static) */
int direct_gbpages;
atomic_long_t nr_memmap_pages;
atomic_long_t nr_memmap_boot_pages;
atomic_long_t num_poisoned_pages;
atomic_long_t zswap_stored_pages;
struct uts_namespace init_uts_ns;  /* init/version.c: uname, crash's sys and its start-up */
const char linux_banner[];  /* init/version.c: "Linux version ...", which crash checks in memory and in vmlinux */
char *saved_command_line;  /* init/main.c: the command line as booted (/proc/cmdline), __ro_after_init */
unsigned int saved_command_line_len;  /* init/main.c: its strlen */
const unsigned char mt_slots[4];  /* lib/maple_tree.c, one per enum maple_type (4 types); crash's maple walk reads it */
const unsigned char mt_pivots[4];
const unsigned char mt_min_slots[4];
struct list_head modules;  /* kernel/module/main.c: the loaded modules (none in the simulated kernel) */
unsigned long tainted_mask;  /* kernel/panic.c */
const struct taint_flag taint_flags[20];  /* kernel/panic.c: taint_flags[TAINT_FLAGS_COUNT] (20 in 6.18) */
u64 jiffies_64;  /* kernel/time/jiffies.c; jiffies is its alias (vmlinux.lds) */
struct tk_data tk_core;  /* kernel/time/timekeeping.c (static): the timekeeper, crash's DATE */
unsigned int cpu_khz;  /* arch/x86/kernel/tsc.c */
unsigned long avenrun[3];  /* kernel/sched/loadavg.c */
struct psi_group psi_system;  /* kernel/sched/psi.c: the system-wide pressure group, /proc/pressure/* */
struct static_key_false psi_disabled;  /* kernel/sched/psi.c: enabled when psi_enable is false at psi_init */
u64 psi_period;  /* kernel/sched/psi.c (static): jiffies_to_nsecs(PSI_FREQ), the averaging period */
