"""vdata.annotators"""
