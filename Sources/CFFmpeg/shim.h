// FFmpeg (libavformat, libavcodec, libswscale, libavutil) for the Video module, plus
// inline helpers for the function-like macros Swift cannot import.
#include <libavformat/avformat.h>
#include <libavcodec/avcodec.h>
#include <libavutil/avutil.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libavutil/error.h>
#include <libavutil/log.h>
#include <libswscale/swscale.h>
#include <errno.h>

static inline int sfnet_averror_eagain(void) { return AVERROR(EAGAIN); }
static inline int sfnet_averror_eof(void) { return AVERROR_EOF; }
static inline int sfnet_averror_enomem(void) { return AVERROR(ENOMEM); }
static inline int64_t sfnet_av_nopts_value(void) { return AV_NOPTS_VALUE; }
static inline int sfnet_av_time_base(void) { return AV_TIME_BASE; }
static inline int sfnet_averror_decoder_not_found(void) { return AVERROR_DECODER_NOT_FOUND; }
