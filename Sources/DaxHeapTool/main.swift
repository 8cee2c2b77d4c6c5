// (the CLI is being written)
print("daxheap")
