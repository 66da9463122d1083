/* Thread pool with a generation counter: spin-then-sleep workers, spin-wait completion. */
#include "threadpool.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

struct pv_pool {
  int nth;
  pthread_t *th;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  atomic_int gen;
  atomic_int pending;
  atomic_int sleepers;
  atomic_int quit;
  void (*fn)(void *, int, int);
  void *arg;
};

typedef struct {
  pv_pool *pool;
  int ith;
} worker_arg;

static void *worker(void *p) {
  worker_arg *wa = p;
  pv_pool *pool = wa->pool;
  int ith = wa->ith;
  free(wa);
  int seen = 0;
  for (;;) {
    int spins = 0;
    while (atomic_load_explicit(&pool->gen, memory_order_acquire) == seen && !atomic_load(&pool->quit)) {
      if (++spins < 4000) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
        continue;
      }
      pthread_mutex_lock(&pool->mu);
      atomic_fetch_add(&pool->sleepers, 1);
      while (atomic_load(&pool->gen) == seen && !atomic_load(&pool->quit)) pthread_cond_wait(&pool->cv, &pool->mu);
      atomic_fetch_sub(&pool->sleepers, 1);
      pthread_mutex_unlock(&pool->mu);
    }
    if (atomic_load(&pool->quit)) return NULL;
    seen = atomic_load(&pool->gen);
    pool->fn(pool->arg, ith, pool->nth);
    atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_release);
  }
}

pv_pool *pv__pool_new(int nth) {
  pv_pool *pool = calloc(1, sizeof *pool);
  if (!pool) return NULL;
  pool->nth = nth < 1 ? 1 : nth;
  pthread_mutex_init(&pool->mu, NULL);
  pthread_cond_init(&pool->cv, NULL);
  pool->th = calloc((size_t)pool->nth, sizeof(pthread_t));
  if (!pool->th) {
    free(pool);
    return NULL;
  }
  for (int i = 1; i < pool->nth; i++) {
    worker_arg *wa = malloc(sizeof *wa);
    if (!wa) {
      pool->nth = i;
      break;
    }
    wa->pool = pool;
    wa->ith = i;
    if (pthread_create(&pool->th[i], NULL, worker, wa) != 0) {
      free(wa);
      pool->nth = i;
      break;
    }
  }
  return pool;
}

void pv__pool_free(pv_pool *pool) {
  if (!pool) return;
  pthread_mutex_lock(&pool->mu);
  atomic_store(&pool->quit, 1);
  pthread_cond_broadcast(&pool->cv);
  pthread_mutex_unlock(&pool->mu);
  for (int i = 1; i < pool->nth; i++) pthread_join(pool->th[i], NULL);
  pthread_mutex_destroy(&pool->mu);
  pthread_cond_destroy(&pool->cv);
  free(pool->th);
  free(pool);
}

int pv__pool_size(const pv_pool *pool) { return pool ? pool->nth : 1; }

void pv__pool_run(void *pp, void (*fn)(void *arg, int ith, int nth), void *arg) {
  pv_pool *pool = pp;
  if (!pool || pool->nth == 1) {
    fn(arg, 0, 1);
    return;
  }
  pool->fn = fn;
  pool->arg = arg;
  atomic_store(&pool->pending, pool->nth - 1);
  atomic_fetch_add_explicit(&pool->gen, 1, memory_order_release);
  if (atomic_load(&pool->sleepers) > 0) {
    pthread_mutex_lock(&pool->mu);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
  }
  fn(arg, 0, pool->nth);
  int spins = 0;
  while (atomic_load_explicit(&pool->pending, memory_order_acquire) > 0) {
    if (++spins > 1000) sched_yield();
#if defined(__x86_64__)
    else __builtin_ia32_pause();
#endif
  }
}
