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
 * harness can scale the workload: workload READY_FILE TMPFS_DIR [ANON_MIB].
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
		ready("child");
		for (;;)
			pause();
	}
	sleep(1); /* let the threads fault their buffers in first */
	ready("parent");
	for (;;)
		pause();
}
