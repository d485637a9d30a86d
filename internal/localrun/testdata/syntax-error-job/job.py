"""A job with a syntax error on line 5."""


def map(key, dims, value, context)
    context.write("x", 1)


def reduce(key, values, context):
    context.write(key, sum(values))
