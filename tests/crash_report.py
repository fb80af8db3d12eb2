"""What a failed subprocess's assertion shows: the end of its output, and for
a crash also the start of Python's crash report (the signal, the crashing
thread), which the end alone cuts off."""


def excerpt(output: str, tail: int = 3000) -> str:
    crash = output.find("Fatal Python error")
    if crash < 0 or crash >= len(output) - tail:
        return output[-tail:]
    return output[crash:crash + 2500] + "\n[...]\n" + output[-tail:]
