// libhdf5's C API (Debian's serial flavour, pkg-config `hdf5`). Its handles are macros
// Swift cannot import (H5P_DEFAULT, H5T_NATIVE_FLOAT...): small inline accessors below.
// Only the Keras worker process (`sfnet _hdf5-worker`) calls into libhdf5.
#include <hdf5.h>

static inline hid_t sfnet_h5p_default(void) { return H5P_DEFAULT; }
static inline hid_t sfnet_h5s_all(void) { return H5S_ALL; }
static inline hid_t sfnet_h5e_default(void) { return H5E_DEFAULT; }
static inline hid_t sfnet_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t sfnet_h5t_c_s1(void) { return H5T_C_S1; }
static inline size_t sfnet_h5t_variable(void) { return H5T_VARIABLE; }
static inline unsigned sfnet_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }

/// 1 when `name` under `loc` is a hard link, 0 when it is another kind (soft, external,
/// user-defined), -1 when it does not exist or cannot be queried. Written here so that
/// H5Lget_info's version macro (1.10 vs 1.12+) resolves at compile time.
static inline int sfnet_h5_is_hard_link(hid_t loc, const char *name) {
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0) return -1;
    H5L_info_t info;
    if (H5Lget_info(loc, name, &info, H5P_DEFAULT) < 0) return -1;
    return info.type == H5L_TYPE_HARD ? 1 : 0;
}
