/* Decoding only a rectangle of a JPEG frame, with libjpeg-turbo's partial decompression
 * (jpeg_crop_scanline, jpeg_skip_scanlines), into a full-size BGR canvas.
 *
 * Built by `python setup.py build_ext --inplace` as mvn.datasets._jpeg_region; used by
 * mvn.datasets.images.read_crop, which checks the result against OpenCV's decoder once per process
 * and falls back to a full cv2.imdecode for every file this module declines.
 *
 * Identity with a full decode: libjpeg-turbo's decoded pixels do not depend on which rows are
 * skipped or which columns are cropped, except in the outermost columns of a cropped row under
 * "fancy" chroma upsampling (libjpeg.txt, "Partial image decompression"). The caller asks for a
 * margin around the pixels it reads, so those columns are never read.
 *
 * decode_into returns False, leaving the canvas in an unspecified state, whenever the result could
 * differ from OpenCV's: any component layout other than 8-bit YCbCr with 4:4:4, 4:2:2, 4:4:0 or
 * 4:2:0 sampling, arithmetic coding, or any warning or error from the library (corrupt data: the
 * full decode then reports it as OpenCV does).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <setjmp.h>
#include <stdio.h>
#include <jpeglib.h>

#if !defined(LIBJPEG_TURBO_VERSION_NUMBER) && !defined(LIBJPEG_TURBO_VERSION)
#error "jpeglib.h is not libjpeg-turbo's: partial decompression needs libjpeg-turbo (Debian: libjpeg62-turbo-dev)"
#endif

typedef struct {
    struct jpeg_error_mgr library;  /* first: libjpeg casts cinfo->err to this */
    jmp_buf escape;
    int warnings;
} ErrorState;

static void on_error(j_common_ptr cinfo) {
    longjmp(((ErrorState *)cinfo->err)->escape, 1);
}

static void on_message(j_common_ptr cinfo, int level) {
    if (level < 0)                  /* a warning: the data is corrupt somewhere */
        ((ErrorState *)cinfo->err)->warnings++;
}

/* A decompressor whose errors longjmp to errors->escape and whose warnings are counted. */
static void create_decompress(struct jpeg_decompress_struct *cinfo, ErrorState *errors) {
    cinfo->err = jpeg_std_error(&errors->library);
    errors->library.error_exit = on_error;
    errors->library.emit_message = on_message;
    errors->warnings = 0;
    jpeg_create_decompress(cinfo);
}

static int supported_layout(const struct jpeg_decompress_struct *cinfo) {
    const jpeg_component_info *c = cinfo->comp_info;
    if (cinfo->num_components != 3 || cinfo->jpeg_color_space != JCS_YCbCr || cinfo->data_precision != 8 ||
        cinfo->arith_code)
        return 0;
    if (c[1].h_samp_factor != 1 || c[1].v_samp_factor != 1 || c[2].h_samp_factor != 1 || c[2].v_samp_factor != 1)
        return 0;
    return (c[0].h_samp_factor == 1 || c[0].h_samp_factor == 2) &&
           (c[0].v_samp_factor == 1 || c[0].v_samp_factor == 2);
}

/* The decoding proper, without the GIL. Returns 1 on success, 0 when declined. Rows [y0, y1) and
 * at least columns [x0, x1) (widened to iMCU boundaries by the library) are written. */
static int decode_rows(const unsigned char *data, size_t size, unsigned char *canvas, JDIMENSION width,
                       JDIMENSION height, JDIMENSION x0, JDIMENSION y0, JDIMENSION x1, JDIMENSION y1) {
    struct jpeg_decompress_struct cinfo;
    ErrorState errors;
    JSAMPROW rows[16];
    volatile int ok = 0;

    create_decompress(&cinfo, &errors);
    if (setjmp(errors.escape)) {
        jpeg_destroy_decompress(&cinfo);
        return 0;
    }
    jpeg_mem_src(&cinfo, (unsigned char *)data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if (!supported_layout(&cinfo) || cinfo.image_width != width || cinfo.image_height != height ||
        errors.warnings)
        goto done;
    cinfo.out_color_space = JCS_EXT_BGR;    /* what OpenCV's decoder asks libjpeg-turbo for */
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_components != 3)
        goto done;
    {
        JDIMENSION xoffset = x0, crop_width = x1 - x0;
        if (crop_width < cinfo.output_width)
            jpeg_crop_scanline(&cinfo, &xoffset, &crop_width);
        else
            xoffset = 0;
        if (y0 > 0)
            jpeg_skip_scanlines(&cinfo, y0);
        while (cinfo.output_scanline < y1) {
            JDIMENSION n = y1 - cinfo.output_scanline, i;
            if (n > 16)
                n = 16;
            for (i = 0; i < n; i++)
                rows[i] = canvas + ((size_t)(cinfo.output_scanline + i) * width + xoffset) * 3;
            if (jpeg_read_scanlines(&cinfo, rows, n) == 0)
                goto done;
        }
    }
    ok = errors.warnings == 0;
done:
    jpeg_abort_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return ok;
}

static PyObject *decode_into(PyObject *self, PyObject *args) {
    Py_buffer data, canvas;
    unsigned int width, height, x0, y0, x1, y1;
    int ok;

    if (!PyArg_ParseTuple(args, "y*w*IIIIII", &data, &canvas, &width, &height, &x0, &y0, &x1, &y1))
        return NULL;
    if ((size_t)canvas.len != (size_t)width * height * 3 || !PyBuffer_IsContiguous(&canvas, 'C') ||
        x0 >= x1 || y0 >= y1 || x1 > width || y1 > height) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&canvas);
        PyErr_SetString(PyExc_ValueError, "decode_into: the canvas must be a C-contiguous (height, width, 3) "
                                          "uint8 array and the rectangle non-empty and inside it");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    ok = decode_rows(data.buf, (size_t)data.len, canvas.buf, width, height, x0, y0, x1, y1);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&canvas);
    return PyBool_FromLong(ok);
}

/* (width, height) of a JPEG this module decodes, or None (another layout or format, or a header
 * with a warning or error). */
static PyObject *supported_size(PyObject *self, PyObject *args) {
    Py_buffer data;
    struct jpeg_decompress_struct cinfo;
    ErrorState errors;
    volatile int ok = 0;
    unsigned int width = 0, height = 0;

    if (!PyArg_ParseTuple(args, "y*", &data))
        return NULL;
    create_decompress(&cinfo, &errors);
    if (!setjmp(errors.escape)) {
        jpeg_mem_src(&cinfo, (unsigned char *)data.buf, (unsigned long)data.len);
        jpeg_read_header(&cinfo, TRUE);
        ok = supported_layout(&cinfo) && errors.warnings == 0;
        width = cinfo.image_width;
        height = cinfo.image_height;
    }
    jpeg_destroy_decompress(&cinfo);
    PyBuffer_Release(&data);
    if (!ok)
        Py_RETURN_NONE;
    return Py_BuildValue("(II)", width, height);
}

static PyObject *library_version(PyObject *self, PyObject *args) {
#ifdef LIBJPEG_TURBO_VERSION_NUMBER
    return PyLong_FromLong(LIBJPEG_TURBO_VERSION_NUMBER);
#else
    Py_RETURN_NONE;
#endif
}

static PyMethodDef methods[] = {
    {"decode_into", decode_into, METH_VARARGS,
     "decode_into(data, canvas, width, height, x0, y0, x1, y1) -> bool\n\n"
     "Decodes rows [y0, y1) and at least columns [x0, x1) of the JPEG bytes ``data`` (a frame of\n"
     "width x height pixels) into ``canvas``, a C-contiguous (height, width, 3) uint8 array, as BGR.\n"
     "False: the file was declined (unsupported layout, or a warning or error); decode it whole."},
    {"supported_size", supported_size, METH_VARARGS,
     "supported_size(data) -> (width, height) of JPEG bytes decode_into takes, or None."},
    {"library_version", library_version, METH_NOARGS,
     "libjpeg-turbo's version number this module was compiled against (e.g. 2001005 for 2.1.5)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_jpeg_region",
                                    "Partial JPEG decoding (libjpeg-turbo) for exact crops.", -1, methods};

PyMODINIT_FUNC PyInit__jpeg_region(void) { return PyModule_Create(&module); }
