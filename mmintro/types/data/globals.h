/*
 * Kernel global variables mmintro places in its simulated kernel image, declared as in the
 * 6.18 sources (BTF carries only per-CPU variables, so the declarations of ordinary globals
 * are restated here; every type named below comes from the BTF).  Array bounds use the
 * configuration constants of the reference kernel (config.txt): MAX_NUMNODES = 1024,
 * NR_CPUS = 256, NR_SECTION_ROOTS = 2048.
 *
 * Format: one declaration per line, "TYPE [*...] NAME[[N]...];" ; "percpu" prefix marks a
 * per-CPU variable (its type is then taken from the BTF DATASEC when present).
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
struct pglist_data *node_data[1024];
nodemask_t node_states[6];
unsigned int nr_node_ids;
unsigned int nr_cpu_ids;
struct cpumask __cpu_online_mask;
struct cpumask __cpu_possible_mask;
struct cpumask __cpu_present_mask;
struct cpumask __cpu_active_mask;
unsigned long __per_cpu_offset[256];
struct mem_section **mem_section;
unsigned long __highest_present_section_nr;
struct mm_struct init_mm;
pgd_t swapper_pg_dir[512];
pud_t level3_kernel_pgt[512];
pmd_t level2_kernel_pgt[512];
struct resource iomem_resource;
struct resource ioport_resource;
atomic_long_t vm_zone_stat[11];
atomic_long_t vm_node_stat[51];
atomic_long_t vm_numa_event[6];
int min_free_kbytes;
int user_min_free_kbytes;
int watermark_scale_factor;
int watermark_boost_factor;
int sysctl_lowmem_reserve_ratio[5];
int sysctl_overcommit_memory;
int sysctl_overcommit_ratio;
unsigned long sysctl_overcommit_kbytes;
struct percpu_counter vm_committed_as;
unsigned long vm_committed_as_batch;
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
struct hstate hstates[2];
int hugetlb_max_hstate;
struct swap_info_struct *swap_info[32];
unsigned int nr_swapfiles;
long total_swap_pages;
atomic_long_t nr_swap_pages;
struct super_block *blockdev_superblock;
struct vmap_node *vmap_nodes;
unsigned int nr_vmap_nodes;
unsigned int vmap_zone_size;
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
struct page *mem_map;
void *high_memory;
unsigned long direct_pages_count[5];
int pcpu_nr_units;
unsigned long pcpu_nr_populated;
u8 *numa_distance;
int numa_distance_cnt;
int vm_dirty_ratio;
int dirty_background_ratio;
unsigned long vm_dirty_bytes;
unsigned long dirty_background_bytes;
int sysctl_stat_interval;
