"""vdata.builders"""
