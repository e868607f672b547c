"""vdata.filters"""
