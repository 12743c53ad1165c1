"""Workloads: drive the simulated kernel through events, deterministically by seed.

Two layers, one above the other:

* :class:`Workload` — a Python API over a booted :class:`~mmintro.kernel.machine.Kernel`:
  ``alloc`` blocks under a tag (a count, or *until* the allocator refuses / a zone reaches a
  watermark / a block lands off its preferred node), ``free`` all, every n-th or a random
  fraction of a tag, ``on_cpu``, ``drain``, slab and vmalloc objects, processes (``spawn``,
  ``fork``, ``exit``) with tagged mappings (``mmap``, ``touch``, ``munmap``, ``mprotect``,
  ``mbind``), files (``create_file``, ``read``, ``write``, ``writeback``), ``sysctl``, and
  ``expect_alloc`` / ``expect`` checks that raise :class:`ExpectationFailed` when the kernel
  does not behave as claimed.  Every random choice comes from ``kernel.rng`` (seeded from
  ``MachineConfig.seed``).
* Scenario files (TOML, read with :mod:`tomllib`): a ``[machine]`` table and an ordered list
  of ``[[step]]`` tables, each naming one action with its arguments::

      [machine]
      ram = "4G"

      [[step]]
      alloc = "slabs"            # the tag
      order = 3
      flags = "GFP_KERNEL"
      until = "exhausted"

      [[step]]
      free = "slabs"
      every = 2

      [[step]]
      expect_alloc = "fails"
      order = 4
      reason = "fragmentation"
      zone = "Normal"

  :func:`load_scenario` checks the whole file before anything runs, and every error is one
  line naming the file, the line and the step: ``fragmented.toml:41: step 3 (alloc): order
  11 is outside 0..10``.  :func:`run_scenario` boots the machine and runs the steps.

Step reference (every step may also have ``note = "..."``, shown in the run's log):

=================  ==================================================================
``alloc = TAG``    ``order`` (0), ``flags`` ("GFP_KERNEL"), ``count`` (1) or ``until`` =
                   "exhausted" | "miss" | "min"/"low"/"high" (with ``zone``); ``node``
                   (preferred node), ``nodemask`` ([0, 1]), ``interleave`` (true or
                   [nodes]), ``cpu``.  A ``count`` without ``until`` must all succeed.
``free = TAG``     all blocks; or ``every`` (+ ``offset``) in allocation order; or a
                   random ``fraction`` / ``count`` (seeded); ``cpu``.
``on_cpu = N``     run the following steps on CPU N.
``drain = true``   drain_all_pages(): every pcp list back to the buddy lists.
``expect_alloc``   "fails" | "succeeds", with the ``alloc`` request keys; ``reason`` =
                   "watermark" | "fragmentation" and ``zone`` (whose verdict, or where
                   the block must come from); ``tag`` keeps a block ("expect").
``expect = EXPR``  an expression on ``zone`` (+ ``node``): comparisons, and/or/not,
                   + - * / // %, and the names free_pages managed present spanned min
                   low high boost nr_free[o] lowmem_reserve[z] nr_reserved_highatomic
                   nr_free_highatomic pcp_count numa_hit numa_miss numa_foreign
                   numa_interleave_hit numa_local numa_other failures, free_blocks(o)
                   (free blocks of order >= o), blocks('tag') pages('tag')
                   blocks_here('tag') pages_here('tag') missed('tag') (blocks off
                   their preferred node).
``snapshot``       ``= NAME``: write the machine as it is at this step, a crash dump a
                   before/after pair can compare (``mmintro simulate ... -o OUT``: OUT-
                   NAME.vmcore + .vmlinux in the final snapshot's format); the run goes
                   on unchanged.  NAME: 1..64 letters, digits, ``-``, ``_``; unique.
=================  ==================================================================

Processes, mappings and files (sizes are bytes or strings such as ``"16M"``; a step that
names a mapping takes ``process = NAME`` unless only one process exists):

===================  ================================================================
``spawn = NAME``     fork+exec a process: ``comm`` (NAME), ``parent`` (a process, else
                     init), ``heap`` (brk growth), ``cpu``, ``oom_score_adj``
                     (-1000..1000, as written to /proc/PID/oom_score_adj).  Mappings
                     ``heap`` (the brk area: the exec'd program's initial heap +
                     growth) and ``stack`` are tagged.
``mmap = TAG``       ``size``, ``prot`` ("rw"), ``kind`` = "anon" | "private" |
                     "shared" (a ``file`` mapping, at ``offset``) | "hugetlb"
                     (``page_size`` "2M"/"1G", ``shared = true`` for MAP_SHARED) |
                     "shmem" (MAP_SHARED|MAP_ANONYMOUS: a "/dev/zero (deleted)"
                     tmpfs file); ``hugepage = true`` madvises MADV_HUGEPAGE.
``touch = TAG``      page faults on the mapping: ``access`` = "read" | "write";
                     [``start``, ``start+size``) of it, all pages, ``every`` n-th
                     (+ ``offset``), or a seeded ``fraction`` / ``count``;
                     ``populate = true``: the whole range by mm_populate;
                     ``until = "oom"``: page by page until the OOM killer kills the
                     process (it fails if it is not killed).  A process the OOM
                     killer kills is gone: a later step naming it is an error.
``fork = NAME``      ``parent`` forks; the child inherits the mapping tags.
``thread = NAME``    ``process`` (the thread group's leader) clones a thread
                     (pthread_create): it shares the leader's mm and mapping tags;
                     the leader's exit ends its threads too.
``exit = NAME``      the process exits (its mm is torn down).
``brk = NAME``       ``grow`` or ``shrink`` = SIZE: brk(2) (the ``heap`` tag follows).
``exec = NAME``      execve(2) of ``comm`` (``heap`` grown after): a new mm; the
                     mapping tags start again (``heap``, ``stack``).
``munmap = TAG``     ``start``/``size`` (default: all of it); ``mprotect = TAG`` with
                     ``prot``; ``mbind = TAG`` with ``policy`` and ``nodes``.
``set_mempolicy``    ``= NAME`` with ``policy`` (default, bind, preferred, interleave,
                     local) and ``nodes``.
``create_file``      ``= TAG`` with ``path`` ("/data/log") and ``size``.
``read``/``write``   ``= TAG`` (a file): ``start``, ``size`` (default: to i_size),
                     ``process`` (the task doing it; default the idle task).
``writeback``        "all" | "background": the flusher writes dirty pages back.
``sysctl = NAME``    ``value``: vm.nr_hugepages, hugepages-1048576kB, vm.dirty_ratio,
                     vm.dirty_background_ratio, vm.dirty_bytes,
                     vm.dirty_background_bytes, transparent_hugepage ("always" ...),
                     vm.swappiness, vm.compact_memory (1: compact every zone), vm.compaction_proactiveness
                     (0..100; non-zero runs kcompactd's proactive compaction),
                     vm.extfrag_threshold (0..1000).
===================  ================================================================

Expectations on processes and files (pages unless said): rss('p') rss_anon('p')
rss_file('p') rss_shmem('p') (the exact sum of the percpu rss counters), total_vm('p') map_count('p')
pgtables_bytes('p') faults('p') (the fault log), pss('p') (kB, as smaps_rollup's Pss), file_pages('f') (mapping->nrpages),
node_stat('NR_...') (summed over nodes), nr_dirty nr_writeback nr_file_pages dirty_thresh
bg_thresh throttled flusher_wakeups hugepages_total hugepages_free hugepages_rsvd hugepages_surp
hugepages_1g_total hugepages_1g_free anon_thp; the OOM killer: killed('p') (1 once the OOM killer
killed p), oom_score('p') and oom_score_adj('p') (as /proc/PID/... print them), oom_kills (the
vm event oom_kill).  Compaction: fragindex(o) (a zone's fragmentation index,
-1000..1000), migrated (folios compaction moved; migrated_anon: the anonymous ones),
mapping_errors('p') (present PTEs of p onto free or unmapped pages, migrated pages rmap does
not find where p maps them, or whose file bytes differ) and migrated_mapped('p') (how many of
p's pages were migrated).

A zone is ``"Normal"`` (on the step's ``node``, else the current CPU's node) or
``"Node 1 Normal"``.  Watermarks read as /proc/zoneinfo prints them (boost included).

This package is a driver above the kernel model (like a test module loaded into a running
kernel), not a mechanism of mm/, so it lives beside ``mmintro/kernel`` rather than in it (whose
source also keys the default machine's snapshot cache, which a workload does not shape); it
uses only the kernel model's entry points -- the allocator's (``alloc_pages``,
``alloc_pages_interleave``, ``free_pages``, ``drain_all_pages``), SLUB's and vmalloc's, and for
processes ``fork.spawn_process`` / ``do_fork``, ``exit.do_exit``, ``mmap.do_mmap`` /
``do_munmap``, ``mprotect.do_mprotect``, ``mempolicy.do_mbind`` / ``do_set_mempolicy``,
``memory.handle_mm_fault`` / ``mm_populate`` (a page is faulted only where ``memory.walk``
finds no suitable entry, as the MMU would), ``filemap.mmap_file`` / ``filemap_read`` /
``filemap_write``, ``page_writeback.wb_writeback`` / ``wb_workfn``, ``hugetlb.hugetlb_mmap`` /
``set_nr_hugepages``, ``huge_memory.madvise_hugepage`` / ``set_thp_mode`` -- and reads the
kernel's books (zones, mm_struct, rss_stat, node counters, hstates, the fault and throttle
logs).

The package, one module per subsystem's steps: :mod:`~mmintro.workload.core` (errors, zone
naming, the state every step works on), :mod:`~mmintro.workload.pages` (page allocator),
:mod:`~mmintro.workload.objects` (slab, vmalloc), :mod:`~mmintro.workload.processes` (processes,
mappings, faults), :mod:`~mmintro.workload.files` (page cache, writeback),
:mod:`~mmintro.workload.huge` (THP, hugetlb), :mod:`~mmintro.workload.pressure` (swap, reclaim,
compaction, the OOM killer, PSI), :mod:`~mmintro.workload.conditions` (expect expressions),
:mod:`~mmintro.workload.api` (:class:`Workload`: the subsystems' steps together),
:mod:`~mmintro.workload.scenario` (reading and checking scenario files) and
:mod:`~mmintro.workload.run` (running them).
"""

from mmintro.workload.api import Workload
from mmintro.workload.conditions import Condition
from mmintro.workload.core import ExpectationFailed, ScenarioError, ScenarioFailed, WorkloadError
from mmintro.workload.pages import AllocResult, Block
from mmintro.workload.pressure import _mapping_errors, _user_ptes
from mmintro.workload.processes import Mapping, _mm_counter, _pss
from mmintro.workload.run import ScenarioRun, StepReport, run_scenario
from mmintro.workload.scenario import SCENARIO_DIR, Scenario, Step, load_scenario, parse_scenario, shipped_scenarios

__all__ = [
    "SCENARIO_DIR",
    "AllocResult",
    "Block",
    "Condition",
    "ExpectationFailed",
    "Mapping",
    "Scenario",
    "ScenarioError",
    "ScenarioFailed",
    "ScenarioRun",
    "Step",
    "StepReport",
    "Workload",
    "WorkloadError",
    "_mapping_errors",
    "_mm_counter",
    "_pss",
    "_user_ptes",
    "load_scenario",
    "parse_scenario",
    "run_scenario",
    "shipped_scenarios",
]
