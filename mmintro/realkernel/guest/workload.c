/*
 * mmintro's reference workload for a real Linux kernel (run as PID-1's child in the harness's
 * initramfs).  Every kind of user memory the simulator models, made on purpose and left in place:
 *
 *   parent   anonymous 16 MiB written (private, its pages then shared copy-on-write with the child),
 *            a 4 MiB MADV_HUGEPAGE region (THP where the kernel can), a 4 MiB file in tmpfs mapped
 *            MAP_SHARED and written, a 2 MiB MAP_SHARED|MAP_ANONYMOUS buffer written, two threads
 *            each with a 1 MiB private buffer of its own;
 *   child    forked after all that: reads every anonymous page (shared CoW), writes the first 4 MiB
 *            (copies), writes the shared buffers (no copies);
 *
 * then each process writes its pid to the ready file and sleeps.  Sizes come from argv so the
 * harness can scale the workload: workload READY_FILE TMPFS_DIR [ANON_MIB [SWAP_MIB]].
 *
 * With SWAP_MIB (a swap device is on), the parent also maps a SWAP_MIB private anonymous region
 * (MADV_NOHUGEPAGE: order-0 folios), writes every page and pushes all of it to swap with
 * MADV_PAGEOUT (21) until mincore() finds no page resident (pageout_all: the first pass leaves
 * the pages in the swap cache under writeback; read-faulted back once it is done, mapped again
 * and clean, the next pass frees them), so that every page is swapped out and none cached.
 * Then, of the region's pages numbered in eighths:
 *   0-3/8, 6/8-1  left swapped out (swap PTEs); after the fork the child shares them (swap count 2),
 *   4/8-5/8       read back by the parent (present PTEs, folios in the swap cache),
 *   5/8-6/8       written by the parent (swap slots freed, plain anonymous pages again);
 * the child reads 0-1/8 back (present in the child, in the swap cache; the parent's PTEs stay
 * swap entries).  Each process prints its own /proc/self/pagemap view of the region's swapped
 * pages on stdout as "mmintro: swapmap PID VADDR NPAGES TYPE OFFSET" runs (consecutive offsets),
 * the real kernel's own word on which swap entry each address holds.  Before all that, a helper
 * process swaps out 4 pages and forks 80 children that share them (swap counts above
 * SWAP_MAP_MAX: continuation pages); it prints "mmintro: swapshare PID VADDR 4 80".
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB (1UL << 20)

static const char *ready_file;

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void touch(volatile char *p, size_t len, char value)
{
	for (size_t i = 0; i < len; i += 4096)
		p[i] = value;
}

static unsigned long sum(volatile char *p, size_t len)
{
	unsigned long s = 0;
	for (size_t i = 0; i < len; i += 4096)
		s += p[i];
	return s;
}

static void ready(const char *role)
{
	char line[64];
	int fd = open(ready_file, O_WRONLY | O_APPEND | O_CREAT, 0644);
	if (fd < 0)
		die("open ready file");
	int n = snprintf(line, sizeof(line), "%s %d\n", role, (int)getpid());
	if (write(fd, line, n) != n)
		die("write ready file");
	close(fd);
}

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

/* Wait until /proc/meminfo says no page is under writeback (bounded: 60 s). */
static void wait_writeback(void)
{
	char buf[4096];
	for (int tries = 0; tries < 600; tries++) {
		int fd = open("/proc/meminfo", O_RDONLY);
		if (fd < 0)
			die("open /proc/meminfo");
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			die("read /proc/meminfo");
		buf[n] = 0;
		char *w = strstr(buf, "\nWriteback:");
		if (w && strtoul(w + 11, NULL, 10) == 0)
			return;
		usleep(100 * 1000);
	}
	fprintf(stderr, "mmintro: swap writeback never finished\n");
}

/* Print the swapped pages of [p, p + len) from /proc/self/pagemap as runs of consecutive swap
 * offsets: bit 62 = swapped, bits 0-4 the swap type, bits 5-54 the offset. */
static void print_swapmap(char *p, size_t len)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0)
		die("open pagemap");
	size_t n = len / 4096;
	unsigned long long *e = malloc(n * 8);
	if (!e || pread(fd, e, n * 8, (off_t)((unsigned long)p / 4096) * 8) != (ssize_t)(n * 8))
		die("read pagemap");
	close(fd);
	for (size_t i = 0; i < n;) {
		if (!(e[i] >> 62 & 1)) {
			i++;
			continue;
		}
		unsigned type = e[i] & 31;
		unsigned long long off = (e[i] & ((1ULL << 55) - 1)) >> 5;
		size_t j = i + 1;
		while (j < n && (e[j] >> 62 & 1) && (e[j] & 31) == type
		       && ((e[j] & ((1ULL << 55) - 1)) >> 5) == off + (j - i))
			j++;
		printf("mmintro: swapmap %d %lx %zu %u %llx\n", (int)getpid(), (unsigned long)p + i * 4096,
		       j - i, type, off);
		i = j;
	}
	fflush(stdout);
	free(e);
}

/*
 * Swap out all of [p, p + len): MADV_PAGEOUT writes the pages to swap but leaves them in the
 * swap cache while the write is in flight, and skips the folios still in another CPU's LRU
 * batch (not yet on an LRU list).  So: page out, wait for writeback, and read-fault back every
 * page mincore() still finds resident (a swap-cache folio is mapped again, clean); the next
 * MADV_PAGEOUT unmaps and frees the clean ones at once and writes the rest.  Until mincore()
 * finds none (bounded).
 */
static void pageout_all(char *p, size_t len)
{
	size_t n = len / 4096;
	unsigned char *vec = malloc(n);
	if (!vec)
		die("malloc");
	for (int tries = 0; tries < 8; tries++) {
		if (madvise(p, len, MADV_PAGEOUT))
			die("madvise(MADV_PAGEOUT)");
		wait_writeback();
		if (mincore(p, len, vec))
			die("mincore");
		size_t resident = 0;
		for (size_t i = 0; i < n; i++)
			if (vec[i] & 1) {
				resident++;
				(void)*(volatile char *)(p + i * 4096);
			}
		if (!resident) {
			free(vec);
			return;
		}
	}
	fprintf(stderr, "mmintro: pages stay resident after MADV_PAGEOUT\n");
	free(vec);
}

/* A private region of anonymous order-0 folios, each page written, then all swapped out. */
static char *swapped_region(size_t len)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap swapped region");
	madvise(p, len, MADV_NOHUGEPAGE);
	for (size_t i = 0; i < len; i += 4096)
		p[i] = (char)(i / 4096 * 7 + 1);
	pageout_all(p, len);
	return p;
}

/*
 * shmem in swap (no swap PTEs: the entries sit in the object's i_pages, counted by
 * shmem_inode_info.swapped; smaps counts them through shmem_swap_usage):
 *   a 1 MiB MAP_SHARED|MAP_ANONYMOUS region, written, paged out, its first quarter read back;
 *   a 2 MiB tmpfs file, written through a shared mapping, paged out and unmapped, then mapped
 *   again from its middle (1 MiB at offset 1 MiB, its first quarter read back: a partial
 *   mapping of the object) and whole, private and writable, never touched (every index a hole).
 * One MADV_PAGEOUT pass each: a shmem folio under writeback stays in the swap cache unmapped,
 * where no later MADV_PAGEOUT reaches it, so SwapCached depends on how fast the writes were.
 */
static void swap_shmem(const char *dir)
{
	char *shm = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shm == MAP_FAILED)
		die("mmap shmem swap");
	touch(shm, MIB, 11);
	if (madvise(shm, MIB, MADV_PAGEOUT))
		die("madvise(MADV_PAGEOUT) shmem");
	wait_writeback();
	(void)sum(shm, MIB / 4);

	char path[256];
	snprintf(path, sizeof(path), "%s/swapped-file", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die("open swapped-file");
	if (ftruncate(fd, 2 * MIB))
		die("ftruncate swapped-file");
	char *all = mmap(NULL, 2 * MIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (all == MAP_FAILED)
		die("mmap swapped-file");
	touch(all, 2 * MIB, 12);
	if (madvise(all, 2 * MIB, MADV_PAGEOUT))
		die("madvise(MADV_PAGEOUT) swapped-file");
	wait_writeback();
	munmap(all, 2 * MIB);
	char *mid = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, MIB);
	char *priv = mmap(NULL, 2 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (mid == MAP_FAILED || priv == MAP_FAILED)
		die("mmap swapped-file again");
	(void)sum(mid, MIB / 4);
	printf("mmintro: shmemswap %d %lx %lx %lx\n", (int)getpid(), (unsigned long)shm, (unsigned long)mid,
	       (unsigned long)priv);
	fflush(stdout);
}

#define SHARERS 80

/*
 * A helper process whose 4 swapped-out pages are then shared by SHARERS forked children, so
 * that each swap entry is referenced by SHARERS + 1 PTEs: more than swap_map's SWAP_MAP_MAX
 * (0x3e), so the counts go on in a continuation page (COUNT_CONTINUED).  Returns once all
 * children exist.
 */
static void share_swap(void)
{
	int done[2];
	if (pipe(done))
		die("pipe");
	pid_t helper = fork();
	if (helper < 0)
		die("fork");
	if (helper == 0) {
		char *p = swapped_region(4 * 4096);
		for (int i = 0; i < SHARERS; i++) {
			pid_t c = fork();
			if (c < 0)
				die("fork sharer");
			if (c == 0)
				for (;;)
					pause();
		}
		printf("mmintro: swapshare %d %lx 4 %d\n", (int)getpid(), (unsigned long)p, SHARERS);
		fflush(stdout);
		if (write(done[1], "x", 1) != 1)
			die("write pipe");
		for (;;)
			pause();
	}
	char c;
	if (read(done[0], &c, 1) != 1)
		die("read pipe");
	close(done[0]);
	close(done[1]);
}

static void *thread_main(void *arg)
{
	char *buf = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		die("thread mmap");
	touch(buf, MIB, (char)(long)arg);
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: workload READY_FILE TMPFS_DIR [ANON_MIB]\n");
		return 2;
	}
	ready_file = argv[1];
	size_t anon_len = (argc > 3 ? strtoul(argv[3], NULL, 0) : 16) * MIB;
	size_t swap_len = (argc > 4 ? strtoul(argv[4], NULL, 0) : 0) * MIB;
	if (swap_len)
		share_swap();

	char *anon = mmap(NULL, anon_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (anon == MAP_FAILED)
		die("mmap anon");
	touch(anon, anon_len, 1);

	/* A 2 MiB-aligned 4 MiB region asking for transparent huge pages. */
	char *raw = mmap(NULL, 6 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED)
		die("mmap thp");
	char *thp = (char *)(((unsigned long)raw + 2 * MIB - 1) & ~(2 * MIB - 1));
	madvise(thp, 4 * MIB, MADV_HUGEPAGE);
	touch(thp, 4 * MIB, 2);

	char path[256];
	snprintf(path, sizeof(path), "%s/shared-file", argv[2]);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die("open tmpfs file");
	if (ftruncate(fd, 4 * MIB))
		die("ftruncate");
	char *file = mmap(NULL, 4 * MIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (file == MAP_FAILED)
		die("mmap file");
	touch(file, 4 * MIB, 3);

	char *shm = mmap(NULL, 2 * MIB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shm == MAP_FAILED)
		die("mmap shared anon");
	touch(shm, 2 * MIB, 4);

	pthread_t t[2];
	for (long i = 0; i < 2; i++)
		if (pthread_create(&t[i], NULL, thread_main, (void *)(i + 5)))
			die("pthread_create");

	char *swp = NULL;
	size_t eighth = swap_len / 8;
	int sync_pipe[2];
	if (swap_len) {
		swp = swapped_region(swap_len);
		(void)sum(swp + 4 * eighth, eighth);
		touch(swp + 5 * eighth, eighth, 9);
		printf("mmintro: swapregion %d %lx %zu\n", (int)getpid(), (unsigned long)swp, swap_len);
		fflush(stdout);
		swap_shmem(argv[2]);
		if (pipe(sync_pipe))
			die("pipe");
	}

	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		/* A fork copies nothing: every page is now shared; writes copy the first 4 MiB. */
		unsigned long s = sum(anon, anon_len) + sum(thp, 4 * MIB);
		touch(anon, 4 * MIB, 6);
		touch(file, 4 * MIB, 7);
		touch(shm, 2 * MIB, 8);
		(void)s;
		if (swap_len) {
			(void)sum(swp, eighth);
			print_swapmap(swp, swap_len);
			if (write(sync_pipe[1], "x", 1) != 1)
				die("write pipe");
		}
		ready("child");
		for (;;)
			pause();
	}
	sleep(1); /* let the threads fault their buffers in first */
	if (swap_len) {
		char c;
		if (read(sync_pipe[0], &c, 1) != 1) /* the child has read its pages back */
			die("read pipe");
		print_swapmap(swp, swap_len);
	}
	ready("parent");
	for (;;)
		pause();
}
