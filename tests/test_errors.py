"""Bad input: every mistake raises an error whose message names the problem."""

import re

import numpy as np
import pytest

import minigrad as mg
from minigrad import tracker


def shapes_in(*shapes):
    """A regex matching a message that mentions every shape, in order."""
    return ".*".join(re.escape(str(s)) for s in shapes)


# -- the loss must be a scalar -------------------------------------------------------------------

def test_non_scalar_loss():
    W = mg.rand(2, 5)
    with pytest.raises(ValueError, match=r"loss must be a scalar.*shape \(2, 5\)"):
        mg.gradient(lambda: W * 2, mg.params(W))
    with pytest.raises(ValueError, match=r"loss must be a scalar.*shape \(3,\)"):
        mg.gradient(lambda w: w * 2, np.ones(3))
    with pytest.raises(ValueError, match=r"loss must be a scalar.*shape \(2,\)"):
        mg.withgradient(lambda: mg.sum(W, axis=1), mg.params(W))
    with pytest.raises(ValueError, match=r"loss must be a scalar"):
        tracker.gradient(lambda: W[0], tracker.Params([W]))
    with pytest.raises(ValueError, match=r"loss must be a scalar.*shape \(2, 5\)"):
        tracker.back_(lambda: W * 2)
    with pytest.raises(ValueError, match=r"loss must be a scalar.*shape \(1,\)"):
        mg.gradient(lambda: mg.sum(W, keepdims=True).reshape(1), mg.params(W))


def test_non_numeric_loss():
    W = mg.rand(2)
    with pytest.raises(TypeError, match=r"loss must be a real number.*complex"):
        mg.gradient(lambda: mg.sum(W) + 1j, mg.params(W))


# -- shape mismatches inside ops -----------------------------------------------------------------

@pytest.mark.parametrize("inside", [False, True], ids=["outside", "inside gradient"])
@pytest.mark.parametrize("op, name", [
    (lambda a, b: a + b, "add"), (lambda a, b: a - b, "sub"), (lambda a, b: a * b, "mul"),
    (lambda a, b: a / b, "div"), (lambda a, b: a ** b, "pow"), (mg.maximum, "maximum"),
    (mg.minimum, "minimum"),
])
def test_elementwise_shape_mismatch(op, name, inside):
    W, v = mg.rand(2, 5), mg.rand(3)
    pattern = rf"{name}: shapes \(2, 5\) and \(3,\) do not broadcast"
    with pytest.raises(ValueError, match=pattern):
        if inside:
            mg.gradient(lambda: mg.sum(op(W, v)), mg.params(W, v))
        else:
            op(W, v)
    # a NumPy constant on the right names the same shapes
    with pytest.raises(ValueError, match=pattern):
        op(W, np.ones(3))


@pytest.mark.parametrize("inside", [False, True], ids=["outside", "inside gradient"])
def test_matmul_shape_mismatch(inside):
    W = mg.rand(2, 5)
    x = np.ones(3)
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 5\) and \(3,\) do not align"):
        if inside:
            mg.gradient(lambda: mg.sum(W @ x), mg.params(W))
        else:
            W @ x
    with pytest.raises(ValueError, match=r"matmul: shapes \(4, 3\) and \(2, 5\)"):
        np.ones((4, 3)) @ mg.rand(2, 5)         # NumPy hands the product to the parameter
    with pytest.raises(ValueError, match=r"matmul: shapes \(5,\) and \(3, 2\)"):
        mg.rand(5) @ mg.rand(3, 2)


def test_reshape_mismatch():
    with pytest.raises(ValueError, match=r"reshape.*\(2, 5\).*10 elements.*\(3, 3\)"):
        mg.reshape(mg.rand(2, 5), 3, 3)


def test_concatenate_mismatch():
    with pytest.raises(ValueError, match=r"dimension"):
        mg.concatenate([mg.rand(2, 5), mg.rand(3, 3)], axis=0)


@pytest.mark.parametrize("x_shape", [(3,), (3, 4), (5, 3, 2)])
def test_dense_wrong_feature_count(x_shape):
    layer = mg.Dense(5, 2)
    pattern = r"dense: weight of shape \(2, 5\).*input of shape \(5,\) or \(5, batch\).*" + \
        re.escape(str(x_shape))
    with pytest.raises(ValueError, match=pattern):
        layer(np.ones(x_shape, np.float32))
    with pytest.raises(ValueError, match=pattern):
        mg.gradient(lambda: mg.sum(layer(np.ones(x_shape))), mg.params(layer))
    with pytest.raises(ValueError, match=pattern):
        mg.Chain(layer, mg.relu)(np.ones(x_shape))


def test_layer_construction_errors():
    with pytest.raises(ValueError, match=r"in_features must be a positive integer, got 0"):
        mg.Dense(0, 2)
    with pytest.raises(TypeError, match=r"activation must be a function"):
        mg.Dense(2, 2, "relu")
    with pytest.raises(TypeError, match=r"layer 1 is not callable"):
        mg.Chain(mg.Dense(2, 2), 3)


@pytest.mark.parametrize("loss", [
    mg.losses.mse, mg.losses.mae, mg.losses.crossentropy, mg.losses.logitcrossentropy,
    mg.losses.binarycrossentropy, mg.losses.logitbinarycrossentropy,
])
def test_loss_with_mismatched_shapes(loss):
    name = loss.__name__
    ŷ, y = np.full((2, 3), 0.5), np.full((3, 2), 0.5)
    pattern = rf"{name}: the prediction has shape \(2, 3\) but the target has shape \(3, 2\)"
    with pytest.raises(ValueError, match=pattern):
        loss(ŷ, y)
    p = mg.param(ŷ)
    with pytest.raises(ValueError, match=pattern):
        mg.gradient(lambda: loss(p, y), mg.params(p))
    # broadcasting is not silently accepted either
    with pytest.raises(ValueError, match=rf"{name}: .*\(2, 3\).*\(3,\)"):
        loss(ŷ, np.full(3, 0.5))


# -- non-float parameters ------------------------------------------------------------------------

def test_param_of_strings():
    with pytest.raises(TypeError, match=r"floating-point.*<U1"):
        mg.param(np.array(["a", "b"]))
    with pytest.raises(TypeError, match=r"floating-point.*complex128"):
        mg.param(np.array([1 + 2j]))
    with pytest.raises(TypeError, match=r"floating-point numpy array.*int64"):
        mg.Param(np.arange(3))


def test_params_of_integer_array():
    with pytest.raises(TypeError, match=r"Params holds trainable arrays; item 0 is a numpy "
                                        r"array of dtype int64 and shape \(3,\)"):
        mg.Params([np.arange(3)])
    W = mg.rand(2)
    with pytest.raises(TypeError, match=r"item 1 is a numpy array of dtype float64"):
        mg.Params([W, np.ones(2)])
    with pytest.raises(TypeError, match=r"Params holds trainable arrays"):
        mg.Params([W]).append(np.ones(2))


def test_params_of_plain_ndarray():
    with pytest.raises(TypeError, match=r"params\(\) got a plain numpy array as argument 0 "
                                        r"\(shape \(3,\)\).*minigrad.param"):
        mg.params(np.ones(3))
    with pytest.raises(TypeError, match=r"argument 1"):
        mg.params(mg.rand(2), np.ones((2, 2)))


def test_constructor_dtype_errors():
    with pytest.raises(TypeError, match=r"rand: trainable arrays are floating point.*int64"):
        mg.rand(np.int64, 3)
    with pytest.raises(ValueError, match=r"zeros: dimensions must be non-negative integers"):
        mg.zeros(2, -1)


# -- Grads lookups -------------------------------------------------------------------------------

def test_grads_for_array_that_is_not_a_parameter():
    W, other = mg.rand(2, 5), mg.rand(2)
    gs = mg.gradient(lambda: mg.sum(W), mg.params(W))
    with pytest.raises(KeyError, match=r"param of dtype float64 and shape \(2,\) is not one of "
                                       r"the 1 parameters"):
        gs[other]
    # the parameter's own storage is not the parameter
    with pytest.raises(KeyError, match=r"numpy array .*shape \(2, 5\) is not one of the 1 "
                                       r"parameters.*include it in the Params"):
        gs[W.data]
    # nor is an equal copy
    with pytest.raises(KeyError, match=r"not one of the 1 parameters"):
        gs[mg.param(W.data)]
    assert isinstance(gs[W], np.ndarray)


# -- misuse of gradient() ------------------------------------------------------------------------

def test_gradient_without_parameters():
    with pytest.raises(TypeError, match=r"needs Params.*needs arguments"):
        mg.gradient(lambda: 1.0)


def test_gradient_of_non_array_argument():
    with pytest.raises(TypeError, match=r"differentiates arrays; argument 0 is str"):
        mg.gradient(lambda x: mg.sum(x), "abc")


def test_assigning_into_tracked_value():
    W = mg.rand(3)

    def loss():
        y = W * 2
        y[0] = 0.0
        return mg.sum(y)

    with pytest.raises(TypeError, match=r"cannot assign into a tracked intermediate value"):
        mg.gradient(loss, mg.params(W))


def test_optimiser_hyperparameter_given_twice_is_an_error():
    with pytest.raises(TypeError, match="eta twice"):
        mg.Adam(0.1, eta=0.2)
    with pytest.raises(TypeError, match="eta twice"):
        mg.Momentum(η=0.1, eta=0.2)


def test_param_of_a_transposed_array_is_c_contiguous_and_trainable():
    p = mg.param(np.arange(6.0).reshape(3, 2).T)
    assert p.data.flags.c_contiguous
    np.testing.assert_array_equal(p, [[0.0, 2.0, 4.0], [1.0, 3.0, 5.0]])
    mg.update_(mg.Descent(0.5), p, np.ones((2, 3)))
    np.testing.assert_array_equal(p, [[-0.5, 1.5, 3.5], [0.5, 2.5, 4.5]])


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble, ">f4", ">f8"])
def test_param_refuses_dtypes_the_kernels_cannot_run(dtype):
    """float16, long double and big-endian floats are refused when the parameter is made,
    with the fix named, instead of failing inside Numba at some later update."""
    x = np.ones(3, dtype)
    with pytest.raises(TypeError, match="float32 or float64.*dtype=np.float32"):
        mg.param(x)
    with pytest.raises(TypeError, match="float32 or float64"):
        mg.Param(x)
    p = mg.param(x, dtype=np.float32)           # the named fix works
    mg.update_(mg.Adam(), p, np.ones(3, np.float32))
    assert p.dtype == np.float32 and np.all(p.data < 1)


@pytest.mark.parametrize("dtype", [np.float16, ">f8"])
def test_apply_on_plain_arrays_of_other_dtypes_is_refused_before_anything_changes(dtype):
    x, g = np.ones(3, dtype), np.ones(3, dtype)
    opt = mg.Adam()
    with pytest.raises(TypeError, match="float32 or float64"):
        mg.update_(opt, x, g)
    assert np.all(x == 1) and len(opt.state) == 0


def test_gradient_of_a_function_of_no_arguments_with_arrays_points_at_params():
    W = np.ones(3)
    with pytest.raises(TypeError, match=r"f takes no arguments.*minigrad\.params.*minigrad\.param"):
        mg.gradient(lambda: mg.sum(W * W), W)
    x = mg.param(np.ones(3))                     # the explicit form itself still works
    assert np.array_equal(mg.gradient(lambda v: mg.sum(v * v), x)[0], 2 * np.ones(3))


def test_update_of_one_parameter_with_a_grads_names_both_forms():
    W = mg.param(np.ones((2, 2)))
    gs = mg.gradient(lambda: mg.sum(W * W), mg.params(W))
    with pytest.raises(TypeError, match=r"update_\(opt, ps, gs\).*update_\(opt, W, gs\[W\]\)"):
        mg.update_(mg.Descent(), W, gs)
    assert np.array_equal(W.data, np.ones((2, 2)))
