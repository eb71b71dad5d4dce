/* GGUF quant blocks of the types the EdgeLLM kernels read, as ggml defines them: weights per block, bytes per block,
 * and the bytes of each field of one block (the planar arrays of edgellm_qmatrix, edgellm_gemv.h).
 *
 * The numbers are ggml's, not ours: tests/edgellm/test_quant_tables.py checks every one against the gguf package
 * (gguf.GGML_QUANT_SIZES) and against the Python layout (edgellm.cuda.layout.FIELDS), so a change on either side
 * fails a test instead of a model.
 */
#ifndef EDGELLM_QUANT_BLOCKS_H
#define EDGELLM_QUANT_BLOCKS_H

#define EDGELLM_QK 32   /* weights per block of the legacy types */
#define EDGELLM_QK_K 256 /* weights per super-block of the K types */

#define EDGELLM_Q4_0_WEIGHTS EDGELLM_QK
#define EDGELLM_Q4_0_BYTES 18
#define EDGELLM_Q4_0_D_BYTES 2   /* fp16 scale */
#define EDGELLM_Q4_0_QS_BYTES 16 /* 32 nibbles */

#define EDGELLM_Q4_1_WEIGHTS EDGELLM_QK
#define EDGELLM_Q4_1_BYTES 20
#define EDGELLM_Q4_1_D_BYTES 4   /* fp16 scale, fp16 minimum */
#define EDGELLM_Q4_1_QS_BYTES 16

#define EDGELLM_Q5_0_WEIGHTS EDGELLM_QK
#define EDGELLM_Q5_0_BYTES 22
#define EDGELLM_Q5_0_D_BYTES 2
#define EDGELLM_Q5_0_QH_BYTES 4  /* the fifth bit of each of the 32 weights */
#define EDGELLM_Q5_0_QS_BYTES 16

#define EDGELLM_Q8_0_WEIGHTS EDGELLM_QK
#define EDGELLM_Q8_0_BYTES 34
#define EDGELLM_Q8_0_D_BYTES 2
#define EDGELLM_Q8_0_QS_BYTES 32 /* int8 */

#define EDGELLM_Q4_K_WEIGHTS EDGELLM_QK_K
#define EDGELLM_Q4_K_BYTES 144
#define EDGELLM_Q4_K_D_BYTES 4        /* fp16 d, fp16 dmin */
#define EDGELLM_Q4_K_SCALES_BYTES 12  /* 8 six-bit scales and 8 six-bit minimums */
#define EDGELLM_Q4_K_QS_BYTES 128

#define EDGELLM_Q6_K_WEIGHTS EDGELLM_QK_K
#define EDGELLM_Q6_K_BYTES 210
#define EDGELLM_Q6_K_QS_BYTES 128     /* ql: the low 4 bits */
#define EDGELLM_Q6_K_QH_BYTES 64      /* the high 2 bits */
#define EDGELLM_Q6_K_SCALES_BYTES 16  /* int8, one per 16 weights */
#define EDGELLM_Q6_K_D_BYTES 2

#endif
