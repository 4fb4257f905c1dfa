"""Initializer names shared by the op definitions (the compiler turns them into arrays)."""

import math


def uniform_fan_in(fan_in: int) -> str:
    """PyTorch's default for linear/conv weights and biases: U(-1/√fan_in, 1/√fan_in)."""
    return f"uniform({1.0 / math.sqrt(max(fan_in, 1)):.8g})"


def xavier_uniform(fan_in: int, fan_out: int) -> str:
    return f"uniform({math.sqrt(6.0 / (fan_in + fan_out)):.8g})"


ZEROS, ONES = "zeros", "ones"
