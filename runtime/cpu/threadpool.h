/* A persistent worker pool: pv__pool_run calls fn(arg, ith, nth) on nth threads (the caller is ith 0)
 * and returns when all are done. Workers spin briefly, then sleep on a condition variable. */
#ifndef PV_THREADPOOL_H
#define PV_THREADPOOL_H
typedef struct pv_pool pv_pool;
pv_pool *pv__pool_new(int nth);
void pv__pool_free(pv_pool *pool);
int pv__pool_size(const pv_pool *pool);
void pv__pool_run(void *pool, void (*fn)(void *arg, int ith, int nth), void *arg);
#endif
